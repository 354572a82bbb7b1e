"""A warning from the package's own code fails the suite, on every session of the matrix (pytest.ini)."""

import warnings

import pytest


@pytest.mark.parametrize("module", ["django_mysqlpool", "django_mysqlpool.handle",
                                    "django_mysqlpool.backends.mysqlpool.base"])
def test_a_warning_from_the_package_is_an_error(module):
    # As warnings.warn() attributes one raised, at its stacklevel, in a
    # module of the package: the filters match on that module's name.
    with pytest.raises(DeprecationWarning, match="from the package"):
        warnings.warn_explicit("from the package", DeprecationWarning, module.replace(".", "/") + ".py", 1,
                               module=module)
