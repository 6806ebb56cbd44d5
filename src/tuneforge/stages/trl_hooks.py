"""Guards for the private trl hooks the preference and online stages override or call.

trl renames its private methods between minor releases without notice. An override of a method trl
no longer calls is silently dead code: trl would then run its own text preparation on our
pre-tokenized rows (re-tokenizing: a second BOS, EOS appended). `require_hooks` turns that into one
clear error before any weights load; tests/stages/test_trl_hooks.py checks that trl still calls each
hook.
"""

from __future__ import annotations

from tuneforge.config.errors import TuneforgeError

# The trl releases the hooks were checked against; keep in step with pyproject.toml's trl bound
# (tests/stages/test_trl_hooks.py compares the two).
TRL_RANGE = ">=1.16,<1.17"


class TrlHookMissing(TuneforgeError, RuntimeError):
    """The installed trl lacks a private method or attribute a stage relies on (the CLI prints it as
    one line, exit 2: it is the environment's problem, not the user's config)."""


def trl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trl")
    except PackageNotFoundError:  # not installed as a distribution (a source tree on sys.path)
        import trl

        return getattr(trl, "__version__", "unknown")


def defines(cls: type, name: str) -> bool:
    """`name` is a method or class attribute of `cls` or a base, or an attribute some __init__ in its
    MRO sets (`self.<name> = ...` puts the name in that function's code names)."""
    for klass in cls.__mro__:
        if name in vars(klass) or name in getattr(klass, "__annotations__", {}):
            return True
        code = getattr(vars(klass).get("__init__"), "__code__", None)
        if code is not None and name in code.co_names:
            return True
    return False


def require_hooks(base_class: type, *names: str) -> None:
    """Raise TrlHookMissing (a RuntimeError) naming every one of `names` (methods we override or call,
    attributes we read) that trl's `base_class` no longer has. Pass trl's class, not our subclass: our
    own override would otherwise satisfy the check."""
    missing = [name for name in names if not defines(base_class, name)]
    if missing:
        hooks = ", ".join(f"{base_class.__name__}.{name}" for name in missing)
        raise TrlHookMissing(f"tuneforge relies on trl's {hooks}, which this trl {trl_version()} lacks; "
                             f"install a trl within {TRL_RANGE} (pip install 'trl{TRL_RANGE}')")
