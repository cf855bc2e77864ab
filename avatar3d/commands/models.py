"""``avatar3d models``: list head models and where they were found; download / install ICT-FaceKit.

    avatar3d models list
    avatar3d models download ict                      # the upstream GitHub repository zip
    avatar3d models download ict --from FILE_OR_URL   # a local zip / tar(.xz) / folder, or another URL
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import Avatar3DError, BadInputError, MissingFileError

ICT_ZIP_URL = "https://github.com/ICT-VGL/ICT-FaceKit/archive/refs/heads/master.zip"


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list head models; download ICT-FaceKit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    ls = sub.add_parser("list", help="show each head model and where it was found")
    ls.set_defaults(func=cmd_list)
    dl = sub.add_parser("download", help="download or install a head model into the cache")
    dl.add_argument("model", choices=["ict"], help="model to install (FLAME needs registration at flame.is.tue.mpg.de)")
    dl.add_argument("--from", dest="source", metavar="FILE_OR_URL", help="local zip / tar.xz / FaceXModel folder, or a URL, instead of GitHub")
    dl.add_argument("--force", action="store_true", help="replace an existing install")
    dl.set_defaults(func=cmd_download)
    p.set_defaults(func=cmd_list)


def cmd_list(args) -> int:
    from ..models import model_status

    for name, ok, detail in model_status():
        print(f"{name:8s} {'yes' if ok else 'no ':3s}  {detail}")
    return 0


def _download(url: str, dest: Path, target: Path) -> None:
    """Stream ``url`` to ``dest`` with a tqdm progress bar (``target``: the install folder, for the error)."""
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            total = int(r.headers.get("Content-Length") or 0) or None
            with open(dest, "wb") as fh, tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, file=sys.stderr) as bar:
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        break
                    fh.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        raise Avatar3DError(
            f"Could not download {url} ({reason}). Download the repository zip from https://github.com/ICT-VGL/ICT-FaceKit "
            "(Code > Download ZIP) on a machine with internet, then run 'avatar3d models download ict --from ICT-FaceKit-master.zip' "
            f"(it installs into {target}), or unpack it anywhere and set $AVATAR3D_ICT to its FaceXModel folder."
        ) from None


def install_ict(source: Path, target: Path, force: bool = False) -> Path:
    """Install the FaceXModel folder from a local archive or folder into ``target``; returns it.

    The files are copied/extracted to a temporary folder beside ``target`` and checked by loading
    the neutral mesh header before the old install is replaced, so a failed install keeps the old.
    """
    from ..models.ict import facex_dir, is_archive, iter_source

    if not source.exists():
        raise MissingFileError(source, "Give a downloaded ICT-FaceKit zip / tar.xz or a FaceXModel folder with --from.")
    if target.exists() and not force and facex_dir(target) is not None:
        print(f"ICT-FaceKit already installed at {target} (use --force to replace it)")
        return target
    src = source
    if source.is_dir():
        d = facex_dir(source)
        if d is None:
            raise BadInputError(f"{source} holds no FaceXModel/generic_neutral_mesh.obj; give the ICT-FaceKit folder or its zip")
        src = d
    elif not is_archive(source):
        raise BadInputError(f"{source} is not a zip / tar archive or a folder; give the ICT-FaceKit repository zip or tar.xz")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ict-install-", dir=target.parent))
    try:
        dest = tmp / "FaceXModel"
        dest.mkdir()
        n = 0
        for name, data in iter_source(src, licence=True):  # LICENSE/README.md land beside FaceXModel
            (dest / name).write_bytes(data)
            n += not name.startswith("../")
        if not (dest / "generic_neutral_mesh.obj").is_file():
            raise BadInputError(f"{source} has no FaceXModel/generic_neutral_mesh.obj; is it the ICT-FaceKit repository?")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"installed {n} ICT-FaceKit files into {target}")
    return target


def cmd_download(args) -> int:
    from ..models.ict import install_dir, load_ict

    target = install_dir()
    src = args.source
    if src is None or "://" in str(src):
        url = src or ICT_ZIP_URL
        with tempfile.TemporaryDirectory() as td:
            zpath = Path(td) / "ICT-FaceKit.zip"
            print(f"downloading {url}", file=sys.stderr)
            _download(url, zpath, target)
            install_ict(zpath, target, force=args.force)
    else:
        install_ict(Path(src).expanduser(), target, force=args.force)
    model = load_ict(target)  # builds the compact cache (and landmark embedding) once, now
    print(f"ICT-FaceKit ready: {model.num_vertices} vertices, {model.num_shape} identity modes, {model.num_expression} expressions")
    return 0
