"""Signature policy: containers-policy.json(5) enforced on the images a build reads, as skopeo
copy and podman pull enforce it.

- :class:`PolicyContext` loads the policy (``--policy FILE``, ``--insecure-policy``, else the
  user's or the system's file) and checks one image: :meth:`PolicyContext.check` raises
  :class:`~bootc_embed.errors.PolicyError` naming the image, the scope that applied, the
  requirement and what failed.
- Signatures come from a :class:`SignatureSource`: :class:`RegistrySignatures` for
  ``docker://`` images (registries.d lookaside, sigstore attachments through an
  :class:`AttachmentFetcher` the registry transport provides), :func:`source_without_signatures`
  for layouts and archives, which carry none.
- ``containers-storage:`` images are read by skopeo, which applies the policy itself:
  :meth:`PolicyContext.skopeo_args` gives the options that pass it on.
"""

from __future__ import annotations

from ..errors import PolicyError
from ._config import InvalidPolicyError, Policy, Requirement, parse_policy, policy_file
from ._evaluate import PolicyContext, policy_scope
from ._names import Named, docker_identity
from ._registries_d import InvalidRegistriesD, RegistriesD
from ._registries_d import load as load_registries_d
from ._signatures import (
    AttachmentFetcher,
    NoSignatures,
    RegistrySignatures,
    Signature,
    SignatureSource,
    Sigstore,
    SimpleSigning,
    attachment_tag,
    source_without_signatures,
)

__all__ = [
    "AttachmentFetcher",
    "InvalidPolicyError",
    "InvalidRegistriesD",
    "Named",
    "NoSignatures",
    "Policy",
    "PolicyContext",
    "PolicyError",
    "RegistriesD",
    "RegistrySignatures",
    "Requirement",
    "Signature",
    "SignatureSource",
    "Sigstore",
    "SimpleSigning",
    "attachment_tag",
    "docker_identity",
    "load_registries_d",
    "parse_policy",
    "policy_file",
    "policy_scope",
    "source_without_signatures",
]
