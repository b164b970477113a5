"""The Hugging Face Hub: every network call of reseg_tf's model sharing is in this module.

A model on the Hub is named `hf://owner/name`, or `hf://owner/name@revision` for a branch, tag
or commit. Downloads go through `huggingface_hub.snapshot_download`, so they land in its cache
(`HF_HUB_CACHE`, by default `~/.cache/huggingface/hub`) and, once there, load with
`HF_HUB_OFFLINE=1` (which `huggingface_hub` reads when it is imported). `huggingface_hub` is
an optional extra (`pip install "reseg_tf[hub]"`); without it, a Hub name gets an error that
says so, and nothing else changes.
"""
import os
import re

HUB_PREFIX = "hf://"
INSTALL_HINT = 'pip install "reseg_tf[hub]" (or pip install huggingface_hub)'
# owner/name as the Hub accepts them: letters, digits, '-', '_', '.', not starting with '-' or '.'.
_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,95}"
_NAME = re.compile(rf"^({_PART})/({_PART})(?:@([^\s@]+))?$")


def is_hub_name(value):
    """Whether `value` names a model on the Hub (`hf://...`)."""
    return isinstance(value, str) and value.startswith(HUB_PREFIX)


def parse_hub_name(name, flag="model"):
    """`(repo_id, revision or None)` of `hf://owner/name[@revision]`; ValueError naming it otherwise."""
    found = _NAME.match(name[len(HUB_PREFIX):]) if is_hub_name(name) else None
    if not found or found.group(2).endswith((".", "-")) or ".." in found.group(0):
        raise ValueError(f"{flag} {name!r}: expected hf://owner/name or hf://owner/name@revision "
                         "(a Hugging Face Hub model id, optionally a branch, tag or commit).")
    return f"{found.group(1)}/{found.group(2)}", found.group(3)


def require_huggingface_hub(purpose):
    """The `huggingface_hub` module; ValueError with the install command when it is missing."""
    try:
        import huggingface_hub
    except ImportError:
        raise ValueError(f"{purpose} needs the huggingface_hub package: {INSTALL_HINT}.") from None
    return huggingface_hub


def _is_offline(huggingface_hub):
    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def download(name, flag="--model"):
    """Downloads (or finds in the cache) the Hub model `name`; returns `(folder, commit)`.

    FileNotFoundError for a repository, revision or cached copy that is not there (naming the
    cache and HF_HUB_OFFLINE when downloads are off), ValueError for other failures.
    """
    repo_id, revision = parse_hub_name(name, flag)
    huggingface_hub = require_huggingface_hub(f"{flag} {name}")
    from huggingface_hub import errors

    from reseg_tf import __version__

    try:
        folder = huggingface_hub.snapshot_download(repo_id=repo_id, revision=revision,
                                                   library_name="reseg_tf", library_version=__version__)
    except errors.LocalEntryNotFoundError:
        cache = huggingface_hub.constants.HF_HUB_CACHE
        why = ("HF_HUB_OFFLINE=1 forbids downloading it" if _is_offline(huggingface_hub)
               else "the Hub could not be reached")
        raise FileNotFoundError(f"{flag} {name}: not in the Hugging Face cache ({cache}) and {why}; "
                                "download it once with network access (the same command), then it "
                                "loads offline.") from None
    except errors.RevisionNotFoundError:
        raise FileNotFoundError(f"{flag} {name}: the repository has no revision {revision!r}.") from None
    except errors.RepositoryNotFoundError:
        raise FileNotFoundError(f"{flag} {name}: no model {repo_id!r} on the Hub (or it is private or "
                                "gated: log in with `hf auth login` or set HF_TOKEN).") from None
    except Exception as error:  # HTTP and connection errors of whichever HTTP client the hub uses
        raise ValueError(f"{flag} {name}: could not download it from the Hub ({_first_line(error)}).") from None
    return folder, os.path.basename(os.path.normpath(folder))


def upload(folder, name, private=False, token=None, message="Upload a ReSeg model with reseg_tf"):
    """Uploads the files of `folder` to the Hub model `name` (created if missing; `@revision`
    pushes to that branch, created from the main branch if missing); returns the commit's URL.

    ValueError without huggingface_hub, without a token (`token`, HF_TOKEN or `hf auth
    login`), or when the Hub refuses or cannot be reached.
    """
    repo_id, revision = parse_hub_name(name, "push to")
    huggingface_hub = require_huggingface_hub("reseg push")
    check_token(token)
    from reseg_tf import __version__

    api = huggingface_hub.HfApi(token=token, library_name="reseg_tf", library_version=__version__)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=os.fspath(folder), revision=revision,
                                   commit_message=message)
    except Exception as error:  # HTTP and connection errors of whichever HTTP client the hub uses
        raise ValueError(f"reseg push {name}: the upload failed ({_first_line(error)}).") from None
    return getattr(commit, "commit_url", None) or f"https://huggingface.co/{repo_id}"


def _first_line(error):
    return f"{type(error).__name__}: " + (str(error).strip().splitlines() or [""])[0]


def check_token(token=None):
    """Raises ValueError unless a Hub token is given, in HF_TOKEN, or stored by `hf auth login`."""
    huggingface_hub = require_huggingface_hub("reseg push")
    if not (token or huggingface_hub.get_token()):
        raise ValueError("reseg push needs a Hugging Face token with write access: run `hf auth login`, "
                         "set HF_TOKEN, or pass token=...; `--dry-run --output DIR` writes the folder "
                         "without uploading.")
