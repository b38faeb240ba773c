"""`ModelSettings`: every argument of a model, collected in one place (as brms's ``brm()``).

`ScreenModel` takes its arguments into one frozen `ModelSettings`; `build_spec` resolves
it against the data; a saved fit stores ``to_dict()`` and `load_fit` rebuilds the model
from ``from_dict()`` (as pymc-marketing's model I/O rebuilds ``__init__``'s arguments
from what was saved). The CLI's config file fills the same object.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from screenformula.spec.priors import DEFAULT_PRIORS, Prior
from screenformula.spec.replicate_scale import DEFAULT_REPLICATE_SCALE

__all__ = ["SETTINGS_VERSION", "ModelSettings"]

#: Version of the saved settings' meaning, stored by `ModelSettings.to_dict`: raise it
#: whenever a default that a saved fit relies on changes, and map the older versions in
#: `ModelSettings.from_dict` (as pymc-marketing stores its model's version beside its
#: configuration). Without the key: version 1 has no ``replicate_scale`` (saved before
#: replicate scales; ``student_slopes``' df estimated, Gamma(2, 0.1)); version 2 has it
#: (saved 2026-12-06, before the key: ``student_slopes``' df read as today's default).
SETTINGS_VERSION = 3


@dataclass(frozen=True)
class ModelSettings:
    """The arguments of `ScreenModel` (see it for their meaning), as given.

    Read like a dict too (``settings["formula"]``, ``settings.get("reference")``).
    """

    formula: str
    family: str = "negativebinomial"
    dispersion: str = "trend"
    replicate_scale: str = DEFAULT_REPLICATE_SCALE
    pool: str | None = "auto"
    priors: dict[str, Any] = field(default_factory=dict)
    lkj_eta: float = 3.0
    parameterization: str | bool | dict[str, Any] = "auto"
    reference: dict[str, str] = field(default_factory=dict)
    guide_states: str = "none"

    def __post_init__(self) -> None:
        object.__setattr__(self, "priors", dict(self.priors or {}))
        object.__setattr__(self, "reference", dict(self.reference or {}))

    # ----------------------------------------------------------- dict-like reading
    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """``settings[key]``, or ``default`` for an unknown key."""
        return getattr(self, key) if key in self.keys() else default

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The setting names, in ``__init__``'s order."""
        return tuple(f.name for f in fields(cls))

    def replace(self, **changes: Any) -> ModelSettings:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------- save/load
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (priors as `Prior.to_dict`)."""
        out: dict[str, Any] = {"version": SETTINGS_VERSION}
        out |= {name: getattr(self, name) for name in self.keys()}
        out["priors"] = {
            k: (v.to_dict() if hasattr(v, "to_dict") else _prior_dict(v))
            for k, v in self.priors.items()
        }
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelSettings:
        """Rebuild from `to_dict`: unknown keys are ignored, missing ones take defaults.

        Settings of an older `SETTINGS_VERSION` keep the defaults they were fitted with: a
        missing ``replicate_scale`` is "none" (every fit saved before the setting had none),
        and such a fit's ``student_slopes`` df was estimated with Gamma(2, 0.1).

        Raises
        ------
        ValueError
            When the settings were saved by a newer screenformula (a larger version).
        """
        version = values.get("version", 2 if "replicate_scale" in values else 1)
        if version > SETTINGS_VERSION:
            raise ValueError(
                f"saved by a newer screenformula (settings version {version}; this one reads "
                f"up to {SETTINGS_VERSION}): upgrade screenformula to load it"
            )
        known = {k: v for k, v in values.items() if k in cls.keys()}
        known["priors"] = {
            k: (Prior.from_dict(v) if isinstance(v, dict) else v)
            for k, v in (known.get("priors") or {}).items()
        }
        known["reference"] = known.get("reference") or {}
        # version 1, saved before replicate scales existed, was fitted without them, and
        # with student_slopes' df estimated (Gamma(2, 0.1); fixed at 3 by default since)
        if version == 1:
            known["replicate_scale"] = "none"
            if "student_slopes" in str(known.get("formula", "")):
                known["priors"].setdefault("df", DEFAULT_PRIORS["df"])
        return cls(**known)


def _prior_dict(value: Any) -> Any:
    """A bambi.Prior (``.name``, ``.args``) as `Prior.to_dict`; numbers (LKJ eta) as they are."""
    name, args = getattr(value, "name", None), getattr(value, "args", None)
    if isinstance(name, str) and isinstance(args, dict):
        return Prior(name, **{k: float(v) for k, v in args.items()}).to_dict()
    return value
