"""Name -> object registries that refuse duplicates and list known names on a miss."""

import contextlib
import importlib
import pkgutil
import sys


class Registry:
    """`package` names the package whose modules register the entries: on a miss its modules
    not imported yet are imported one by one, and the message names the one that registers the
    name (no table of names to keep)."""

    def __init__(self, kind, package=None):
        self.kind = kind
        self._entries = {}
        self._modules = {}  # name -> the module that registered it
        self.package = package

    def register(self, name, obj=None):
        """Registers `obj` under `name`; usable as a decorator when `obj` is omitted."""
        if obj is None:
            return lambda o: self.register(name, o)
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj
        frame = sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__") == __name__:
            frame = frame.f_back
        self._modules[name] = frame.f_globals.get("__name__") if frame is not None else None
        return obj

    def _import_package(self):
        """Imports `package`, whose import registers its modules (tfkd.distillers imports every
        method module), so that the entries are complete whichever tfkd module came first."""
        if self.package is not None and self.package not in sys.modules:
            importlib.import_module(self.package)

    def get(self, name):
        self._import_package()
        try:
            return self._entries[name]
        except KeyError:
            home = self._home(name)
            where = (
                f"; it is registered by {home}, which was not imported (import {home})"
                if home
                else ""
            )
            raise ValueError(
                f"{self.kind} {name!r} is not registered{where}; known: "
                f"{', '.join(sorted(self._entries))}"
            ) from None

    def _home(self, name):
        """The module of `package` that registers `name` when imported, or None."""
        if self.package is None:
            return None
        package = importlib.import_module(self.package)  # may import every module itself
        for module in pkgutil.iter_modules(package.__path__):
            if name in self._entries:
                break
            if not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")
        return self._modules.get(name) if name in self._entries else None

    def names(self):
        self._import_package()
        return sorted(self._entries)

    def __contains__(self, name):
        self._import_package()
        return name in self._entries

    @contextlib.contextmanager
    def temporary(self, name, obj):
        """Registers `obj` for the duration of a `with` block (for tests)."""
        self.register(name, obj)
        try:
            yield obj
        finally:
            del self._entries[name]
            self._modules.pop(name, None)
