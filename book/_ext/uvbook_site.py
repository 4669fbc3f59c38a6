"""Two fixes and a check for the uvbook site that _config.yml cannot express on its own.

Loaded by Jupyter Book through `sphinx.local_extensions` in _config.yml. It lives under
book/ so that every copy of the book (`make test` copies book/ to _quick/) carries it.

1. The launch buttons (Colab, Binder) and the repository button follow `repository.url`.
   Jupyter Book refuses `html.use_repository_button: true` without a URL, and
   sphinx-book-theme crashes on launch buttons without one, so _config.yml keeps the
   providers configured and this extension switches the buttons on only when the URL is
   set: a fork sets that one line and gets working buttons; with it empty the site
   shows none (and no broken ones).
2. Sphinx 7.4 writes every inline <script> that an extension adds after the builder
   started twice (the builder keeps it with filename None, and `prepare_writing` adds it
   again from the registry as '', which does not compare equal). Twice is harmless for
   sphinx-togglebutton's `var`, but sphinx-thebe's `const THEBE_JS_URL` is a
   SyntaxError ("Identifier 'THEBE_JS_URL' has already been declared") on every page.
3. Chapter 5's latent explorer reads `_static/explorer/vae2d.js`, which the chapter writes
   when it runs (it is not in git). A build that took the chapter's outputs from the
   execution cache in a checkout without that file would publish an explorer with no
   data: the build warns (an error under -W) when the chapter is in the book and the
   file is not in the site.
"""

from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

logger = logging.getLogger(__name__)

LAUNCH_PROVIDERS = ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url", "jupyterlite_url")


def buttons_follow_repository_url(app: Sphinx, config: Config) -> None:
    options = config.html_theme_options
    if str(options.get("repository_url") or "").strip():
        options["use_repository_button"] = True
        return
    launch = dict(options.get("launch_buttons") or {})
    for key in LAUNCH_PROVIDERS:
        launch.pop(key, None)
    options["launch_buttons"] = launch
    for key in ("use_repository_button", "use_issues_button", "use_edit_page_button", "use_source_button"):
        options[key] = False


def inline_scripts_once(app: Sphinx, env) -> None:
    """Give the builder's inline scripts the filename '' that `prepare_writing` re-adds them with."""
    from sphinx.builders.html._assets import _JavaScript

    scripts = getattr(app.builder, "_js_files", None)
    if not scripts:
        return
    for i, script in enumerate(scripts):
        if script.filename is None:
            scripts[i] = _JavaScript("", priority=script.priority, **script.attributes)


EXPLORER_CHAPTER = "05_vaes"                   # the page whose explorer reads the file below
EXPLORER_DATA = Path("_static") / "explorer" / "vae2d.js"


def explorer_has_its_data(app: Sphinx, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    if not any(doc.split("/")[-1] == EXPLORER_CHAPTER for doc in app.env.found_docs):
        return
    if not (Path(app.outdir) / EXPLORER_DATA).is_file():
        logger.warning(f"{EXPLORER_DATA} is not in the site: Chapter 5's latent explorer would have no data. "
                       f"Run the chapter (it writes book/{EXPLORER_DATA}), e.g. after `make clean-cache`.")


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", buttons_follow_repository_url)
    app.connect("env-updated", inline_scripts_once)
    app.connect("build-finished", explorer_has_its_data)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
