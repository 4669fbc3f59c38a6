"""Chapter 3's measures in uvbook.evaluate, on cases whose answer is known by hand."""

import numpy as np
import pytest

from uvbook import evaluate


def test_reconstruction_mse_by_hand():
    x = np.zeros((2, 2, 2, 1))
    x_hat = np.zeros((2, 2, 2, 1))
    x_hat[0] = 0.1          # image 0: every pixel off by 0.1 -> 0.01
    x_hat[1, 0, 0, 0] = 0.4  # image 1: one pixel of four off by 0.4 -> 0.16 / 4 = 0.04
    np.testing.assert_allclose(evaluate.reconstruction_mse(x, x_hat, per_image=True), [0.01, 0.04])
    assert evaluate.reconstruction_mse(x, x_hat) == pytest.approx(0.025)
    assert evaluate.reconstruction_mse(x, x) == 0.0


def test_psnr_by_hand():
    x = np.zeros((2, 4, 4, 1), np.float32)
    x_hat = x.copy()
    x_hat[0] = 0.1  # MSE 0.01 -> 20 dB
    x_hat[1] = 0.01  # MSE 1e-4 -> 40 dB
    np.testing.assert_allclose(evaluate.psnr(x, x_hat, per_image=True), [20.0, 40.0], rtol=1e-5)
    assert evaluate.psnr(x, x_hat) == pytest.approx(30.0, rel=1e-5)
    # on 8-bit scale, the same relative error gives the same PSNR
    assert evaluate.psnr(255 * x, 255 * x_hat, data_range=255) == pytest.approx(30.0, rel=1e-5)
    assert evaluate.psnr(x, x) == np.inf


def test_precision_at_k_leave_one_out_by_hand():
    # classes 0 and 1 on a line: 0 at 0, 1, 2 and 1 at 10, 11, and a class-0 outlier at 12
    feats = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
    labels = np.array([0, 0, 0, 1, 1, 0])
    mean, per_class = evaluate.retrieval_precision_at_k(feats, labels, k=2, by_class=True)
    # k=2: 0 -> {1,2} 2/2; 1 -> {0,2} 2/2; 2 -> {1,0} 2/2; 3 -> {4,5} 1/2; 4 -> {3,5} 1/2; 5 -> {4,3} 0/2
    assert mean == pytest.approx((1 + 1 + 1 + 0.5 + 0.5 + 0) / 6)
    assert per_class == {0: pytest.approx(3 / 4), 1: pytest.approx(0.5)}


def test_precision_at_k_never_retrieves_the_query_even_with_duplicates():
    feats = np.zeros((4, 3))  # four identical items: all distances tie
    labels = np.array([0, 0, 1, 1])
    # each item's 3 neighbours are the other three: one of its class, two not
    assert evaluate.retrieval_precision_at_k(feats, labels, k=3) == pytest.approx(1 / 3)


def test_precision_at_k_with_separate_queries():
    db = np.array([[0.0, 0], [0, 1], [5, 5], [5, 6]])
    db_y = np.array([0, 0, 1, 1])
    q = np.array([[0.0, 0.5], [5, 5.5], [0.2, 0.2]])
    q_y = np.array([0, 1, 1])
    # queries 0 and 1 retrieve their own class twice; query 2 (labelled 1) retrieves class 0
    got = evaluate.retrieval_precision_at_k(db, db_y, k=2, query_features=q, query_labels=q_y)
    assert got == pytest.approx(2 / 3)
    images = np.random.default_rng(0).random((6, 4, 4, 1))
    assert 0.0 <= evaluate.retrieval_precision_at_k(images, [0, 1, 0, 1, 0, 1], k=1) <= 1.0


def test_anomaly_auc_by_hand():
    assert evaluate.anomaly_auc([0.1, 0.2, 0.3], [0.4, 0.5]) == 1.0
    assert evaluate.anomaly_auc([0.4, 0.5], [0.1, 0.2, 0.3]) == 0.0
    # pairs (anomaly > normal): 0.25 beats 0.1 and 0.2, 0.15 beats 0.1 -> 3 of 4
    assert evaluate.anomaly_auc([0.1, 0.2], [0.25, 0.15]) == 0.75
    # a tie counts one half
    assert evaluate.anomaly_auc([0.5], [0.5]) == 0.5


@pytest.mark.parametrize("call, message", [
    (lambda: evaluate.reconstruction_mse(np.zeros((2, 3)), np.zeros((2, 4))), r"shape of x \(2, 3\)"),
    (lambda: evaluate.reconstruction_mse(np.zeros(3), np.zeros(3)), "non-empty batch"),
    (lambda: evaluate.reconstruction_mse(np.zeros((0, 3)), np.zeros((0, 3))), "non-empty batch"),
    (lambda: evaluate.reconstruction_mse(np.full((1, 2), np.nan), np.zeros((1, 2))), "finite"),
    (lambda: evaluate.reconstruction_mse(np.array([["a", "b"]]), np.zeros((1, 2))), "real numbers"),
    (lambda: evaluate.psnr(np.zeros((1, 2)), np.zeros((1, 2)), data_range=0), "data_range must be a positive"),
    (lambda: evaluate.retrieval_precision_at_k(np.zeros((3, 2)), [0, 1, 1], k=3), "minus one"),
    (lambda: evaluate.retrieval_precision_at_k(np.zeros((3, 2)), [0, 1, 1], k=0), "positive integer"),
    (lambda: evaluate.retrieval_precision_at_k(np.zeros((3, 2)), [0, 1], k=1), "3 rows|2 rows"),
    (lambda: evaluate.retrieval_precision_at_k(np.zeros((3, 2)), [0, 1, 1], query_features=np.zeros((1, 2))),
     "given together"),
    (lambda: evaluate.retrieval_precision_at_k(np.zeros((3, 2)), [0, 1, 1], k=1,
                                               query_features=np.zeros((1, 5)), query_labels=[0]),
     "dimension 2"),
    (lambda: evaluate.anomaly_auc([], [1.0]), "non-empty 1-D"),
    (lambda: evaluate.anomaly_auc([[0.1]], [1.0]), "non-empty 1-D"),
    (lambda: evaluate.anomaly_auc([0.1, np.inf], [1.0]), "finite real"),
])
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_pca_reconstruct_matches_scikit_learn_and_its_limits():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(0).uniform(size=(50, 4, 4, 1)).astype(np.float32)
    flat = x.reshape(50, -1)
    pca = PCA().fit(flat)
    for k in (1, 5):
        expected = PCA(n_components=k).fit(flat)
        expected = expected.inverse_transform(expected.transform(flat))
        got = evaluate.pca_reconstruct(flat, pca.mean_, pca.components_, k)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    images = evaluate.pca_reconstruct(x, pca.mean_, pca.components_, 16)     # every direction: x itself
    assert images.shape == x.shape
    np.testing.assert_allclose(images, x, atol=1e-5)
    np.testing.assert_allclose(evaluate.pca_reconstruct(flat, pca.mean_, pca.components_, 0),
                               np.broadcast_to(pca.mean_, flat.shape), atol=1e-7)   # k = 0: the mean image
    with pytest.raises(ValueError, match=r"k must be an integer from 0 to 16; got 17"):
        evaluate.pca_reconstruct(flat, pca.mean_, pca.components_, 17)
    with pytest.raises(ValueError, match=r"components shape \(n, 16\)"):
        evaluate.pca_reconstruct(flat, pca.mean_, pca.components_[:, :8], 2)

