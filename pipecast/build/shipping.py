"""Package delivery for a compile and a submit: which folder is packaged, where it goes, and when.

``prepare_package`` finds the import root of the pipeline's step modules (the ``sys.path`` entry they were
imported from: ``examples/ml_pipeline.py`` → ``examples``), archives it (:mod:`pipecast.build.package`) and names
its place in the artifact root; the compile writes that URI and sha256 into every task command, and submit
uploads the archive (:func:`pipecast.build.package.upload_package`) before the engine sees the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipecast.build.context import DEFAULT_MAX_BYTES, import_root
from pipecast.build.package import CodePackage, CodePackageError, build_package, package_uri
from pipecast.compiler import ir

CODE_MODES = ("image", "package", "none")


@dataclass(frozen=True, slots=True)
class PreparedPackage:
    """A code package ready to be referenced by a compile and uploaded by a submit."""

    package: CodePackage
    import_root: str
    artifact_root: str
    uri: str


def prepare_package(pipeline: ir.Pipeline, artifact_root: str | None, *, limit: int = DEFAULT_MAX_BYTES
                    ) -> PreparedPackage:
    """Archive the pipeline's import root and name its place under ``artifact_root`` (nothing is uploaded)."""
    if not artifact_root:
        raise CodePackageError(f"pipeline {pipeline.name!r} has no artifact root to ship its code package through; "
                               "fix: pass artifact_root= to @pipeline or --set artifact_root=s3://BUCKET/PREFIX")
    root = str(import_root(pipeline))
    package = build_package(root, limit=limit)
    return PreparedPackage(package, root, artifact_root, package_uri(package, artifact_root))
