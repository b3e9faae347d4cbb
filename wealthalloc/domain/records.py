"""Frozen value records that a replay makes by the hundred thousand.

A frozen dataclass's generated ``__init__`` sets each field through
``object.__setattr__`` (its own ``__setattr__`` refuses), a call per field:
for a Form 8949 row of eleven fields that is most of what building it costs,
and a 100,000-trade gains report builds about 260,000 rows, losses and wash
sales. :func:`frozen_record` keeps everything a frozen dataclass is (fields,
``replace``, equality, hashing, the refusal to assign) and only replaces the
constructor with one that stores straight into the instance's ``__dict__``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from typing_extensions import dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def frozen_record(cls: type[_T]) -> type[_T]:
    """``@dataclass(frozen=True)``, with a constructor that stores the fields without ``__setattr__``.

    Fields are keyword or positional as with the dataclass; defaults are
    kept; a class with ``__post_init__``, ``default_factory`` fields or
    ``__slots__`` is refused, since the faster constructor would skip or
    break them.
    """
    if "__post_init__" in cls.__dict__ or "__slots__" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: frozen_record takes no __post_init__ or __slots__")
    record: Any = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(record)
    if any(field.default_factory is not dataclasses.MISSING for field in fields):
        raise TypeError(f"{cls.__name__}: frozen_record takes no default_factory")
    names = [field.name for field in fields]
    defaults = {f"_default_{f.name}": f.default for f in fields if f.default is not dataclasses.MISSING}
    parameters = ", ".join(
        name + (f"=_default_{name}" if f"_default_{name}" in defaults else "") for name in names
    )
    # One store per field into the instance's own (key-sharing) dict: no temporary dict, and the
    # instance keeps the compact layout that update() with a dict literal would give up.
    stores = "".join(f"    fields[{name!r}] = {name}\n" for name in names)
    source = f"def __init__(self, {parameters}):\n    fields = self.__dict__\n{stores}"
    namespace: dict[str, Any] = dict(defaults)
    exec(source, namespace)  # noqa: S102 - the source is built from the class's own field names
    init = namespace["__init__"]
    init.__qualname__ = f"{record.__qualname__}.__init__"
    init.__doc__ = record.__init__.__doc__
    record.__init__ = init
    return record  # type: ignore[no-any-return]
