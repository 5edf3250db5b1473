"""`python -m rmood profile` (`make profile`): link profiles/slurm as the user's `slurm` Snakemake profile.

Snakemake looks a profile named on the command line up in the current folder, then in the user's config folder
(`$XDG_CONFIG_HOME/snakemake`, by default `~/.config/snakemake`), then the site's: the Snakemake-Profiles
convention. With the link, `snakemake --profile slurm mrm_eval` works as typed, from any folder, and follows this
checkout's profile as it changes. An existing profile of that name that is not this link is never overwritten.
"""

from __future__ import annotations

from pathlib import Path

from rmood.config import ROOT

PROFILE = ROOT / "profiles" / "slurm"


class ProfileError(RuntimeError):
    """A profile of that name exists and is not a link to ours."""


def user_profiles() -> Path:
    """The folder where Snakemake looks for a user's profiles (Snakemake's own lookup)."""
    from snakemake.common import get_appdirs

    return Path(get_appdirs().user_config_dir)


def link_profile(name: str = "slurm", target: Path = PROFILE, folder: Path | None = None) -> tuple[Path, bool]:
    """Make `<folder>/<name>` a symbolic link to `target`; returns the link and whether it was made now (False: it
    was there already). Raises ProfileError when something else has that name."""
    link = (folder or user_profiles()) / name
    target = target.resolve()
    if link.is_symlink() or link.exists():
        if link.is_symlink() and link.resolve() == target:
            return link, False
        what = f"a link to {link.readlink()}" if link.is_symlink() else "a folder" if link.is_dir() else "a file"
        raise ProfileError(f"{link} exists and is {what}, not a link to {target}; move it away, or pick another "
                           f"name with --name")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    return link, True
