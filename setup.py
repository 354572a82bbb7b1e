import re

from setuptools import find_packages, setup

with open("django_mysqlpool/_version.py", encoding="utf-8") as version_file:
    version = re.search(r'__version__ = "([^"]+)"', version_file.read()).group(1)

with open("README.rst", encoding="utf-8") as readme:
    long_description = readme.read()

setup(
    name="django-mysqlpool",
    version=version,
    description="A connection pool for Django on MySQL and MariaDB, built on SQLAlchemy's pools.",
    long_description=long_description,
    long_description_content_type="text/x-rst",
    license="MIT",
    packages=find_packages(include=["django_mysqlpool", "django_mysqlpool.*"]),
    package_data={"django_mysqlpool": ["py.typed"]},
    python_requires=">=3.10",
    install_requires=[
        "Django>=5.2,<6.2",
        "SQLAlchemy>=2.0,<2.2",
        # 2.2.1: Django 6 reads MySQLdb.__version__, which 2.2.0 lacks.
        "mysqlclient>=2.2.1",
    ],
    extras_require={
        "otel": ["opentelemetry-api>=1.20"],
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "pytest-timeout>=2.2",
            "pytest-django>=4.8",
            "PyMySQL>=1.1",
            "gunicorn>=22",
            "gevent>=24.2",
            "celery>=5.6",
            "uvicorn>=0.30",
            "import-linter>=2.1",
            "opentelemetry-api>=1.20",
            "opentelemetry-sdk>=1.20",
            "mypy>=1.10",
            "django-stubs>=5.1",
            "Sphinx>=7.2",
            "furo>=2024.1.29",
            "readme-renderer>=43",
        ],
    },
    classifiers=[
        "Framework :: Django",
        "Framework :: Django :: 5.2",
        "Framework :: Django :: 6.0",
        "Framework :: Django :: 6.1",
        "Development Status :: 4 - Beta",
        "Intended Audience :: Developers",
        "License :: OSI Approved :: MIT License",
        "Operating System :: POSIX",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Database",
    ],
)
