"""The drift check's label rule: the label distribution counts only when every row of the window is labelled.

A window mixes labelled files (dataset versions, with `y`) and unlabelled ones (the scoring-input collector's
records); comparing the labels of only some rows with the reference's would report a shift that is only the
mix. Used by the inline drift check and by the drift job's merge step alike."""

from __future__ import annotations

from dataclasses import replace

from shared.domain.profile import Profile


def labelled(profile: Profile) -> bool:
    """Every row has a label (the drift check's rule for counting label drift)."""
    return profile.target is not None and profile.rows > 0 and profile.target.missing == 0


def as_compared(profile: Profile) -> tuple[Profile, bool]:
    """(the profile as the comparison sees it, whether its labels count): `y` is left out unless `labelled`."""
    has_labels = labelled(profile)
    return (profile if has_labels else replace(profile, target=None)), has_labels
