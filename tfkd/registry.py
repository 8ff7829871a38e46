"""Name -> object registries that refuse duplicates and list known names on a miss."""
import contextlib


class Registry:
    """`homes` maps names registered by modules not imported yet to those modules, so that a
    miss on such a name says which import registers it."""

    def __init__(self, kind, homes=None):
        self.kind = kind
        self._entries = {}
        self.homes = dict(homes or {})

    def register(self, name, obj=None):
        """Registers `obj` under `name`; usable as a decorator when `obj` is omitted."""
        if obj is None:
            return lambda o: self.register(name, o)
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj
        return obj

    def get(self, name):
        try:
            return self._entries[name]
        except KeyError:
            home = self.homes.get(name)
            where = (f"; it is registered by {home}, which is not imported yet (import {home})"
                     if home else "")
            raise ValueError(f"{self.kind} {name!r} is not registered{where}; known: "
                             f"{', '.join(sorted(self._entries))}") from None

    def names(self):
        return sorted(self._entries)

    def __contains__(self, name):
        return name in self._entries

    @contextlib.contextmanager
    def temporary(self, name, obj):
        """Registers `obj` for the duration of a `with` block (for tests)."""
        self.register(name, obj)
        try:
            yield obj
        finally:
            del self._entries[name]
