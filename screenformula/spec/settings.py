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

__all__ = ["ModelSettings"]


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
        out = {name: getattr(self, name) for name in self.keys()}
        out["priors"] = {
            k: (v.to_dict() if hasattr(v, "to_dict") else _prior_dict(v))
            for k, v in self.priors.items()
        }
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelSettings:
        """Rebuild from `to_dict`: unknown keys are ignored, missing ones take defaults.

        A missing ``replicate_scale`` is "none": every fit saved before the setting had none;
        such a fit's ``student_slopes`` df was estimated with Gamma(2, 0.1).
        """
        known = {k: v for k, v in values.items() if k in cls.keys()}
        known["priors"] = {
            k: (Prior.from_dict(v) if isinstance(v, dict) else v)
            for k, v in (known.get("priors") or {}).items()
        }
        known["reference"] = known.get("reference") or {}
        # a fit saved before replicate scales existed was fitted without them, and with
        # student_slopes' df estimated (Gamma(2, 0.1); fixed at 3 by default since)
        if "replicate_scale" not in known:
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
