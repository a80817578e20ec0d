from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from controlplane.ca.authority import generate_root, load_issuer, load_or_generate_authority
from controlplane.ca.bundle import RootRotation
from controlplane.ca.errors import CAStoreError, InvalidCAMaterialError
from controlplane.ca.store import CAMaterial, CAStore, FileCAStore
from tests.ca.builders import FakeClock, make_intermediate


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_first_start_generates_and_persists_a_root_that_the_next_start_reloads(tmp_path: Path) -> None:
    clock = FakeClock()
    store: CAStore = FileCAStore(tmp_path / "ca.pem")
    first = (await load_or_generate_authority(store, "cluster.local", clock)).issuer
    assert _mode(tmp_path / "ca.pem") == 0o600
    again = (
        await load_or_generate_authority(FileCAStore(tmp_path / "ca.pem"), "cluster.local", clock)
    ).issuer
    assert again.certificate == first.certificate
    assert again.key.private_numbers() == first.key.private_numbers()
    # No temporary file left behind.
    assert _names(tmp_path) == ["ca.pem"]


async def test_mode_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        await FileCAStore(tmp_path / "ca.pem").save(generate_root("cluster.local", FakeClock()).to_material())
    finally:
        os.umask(old)
    assert _mode(tmp_path / "ca.pem") == 0o600


async def test_save_replaces_the_previous_material(tmp_path: Path) -> None:
    clock = FakeClock()
    store = FileCAStore(tmp_path / "ca.pem")
    await store.save(generate_root("cluster.local", clock).to_material())
    second = generate_root("cluster.local", clock)
    await store.save(second.to_material())
    loaded = await store.load()
    assert loaded is not None
    assert load_issuer(loaded, now=clock.now()).certificate == second.certificate


async def test_intermediate_with_chain_round_trips(tmp_path: Path) -> None:
    clock = FakeClock()
    root = generate_root("cluster.local", clock)
    intermediate = make_intermediate(root, clock)
    store = FileCAStore(tmp_path / "ca.pem")
    await store.save(intermediate.to_material())
    loaded = await store.load()
    assert loaded is not None
    issuer = load_issuer(loaded, now=clock.now())
    assert issuer.certificate == intermediate.certificate
    assert issuer.root == root.certificate


async def test_a_restart_in_the_middle_of_a_rotation_resumes_where_it_was(tmp_path: Path) -> None:
    clock = FakeClock()
    store = FileCAStore(tmp_path / "ca.pem")
    ca = await load_or_generate_authority(store, "cluster.local", clock)
    old_root = ca.issuer.root
    new_issuer = make_intermediate(generate_root("cluster.local", clock), clock)
    rotation = RootRotation(ca, new_issuer, clock=clock)

    rotation.trust_new_root()
    await store.save(ca.material())
    restarted = await load_or_generate_authority(store, "cluster.local", clock)
    assert restarted.trust_bundle == ca.trust_bundle
    assert len(restarted.trust_bundle.roots) == 2
    assert restarted.issuer.root == old_root

    clock.advance(ca.max_ttl)
    rotation.switch_signing()
    await store.save(ca.material())
    restarted = await load_or_generate_authority(store, "cluster.local", clock)
    assert restarted.issuer.certificate == new_issuer.certificate
    assert restarted.issuer.chain == (new_issuer.certificate,)
    assert restarted.trust_bundle == ca.trust_bundle

    clock.advance(ca.max_ttl)
    rotation.retire_old_root()
    await store.save(ca.material())
    restarted = await load_or_generate_authority(store, "cluster.local", clock)
    assert restarted.trust_bundle.roots == (new_issuer.root,)


async def test_stored_root_for_another_trust_domain_is_refused(tmp_path: Path) -> None:
    clock = FakeClock()
    store = FileCAStore(tmp_path / "ca.pem")
    await load_or_generate_authority(store, "cluster.local", clock)
    with pytest.raises(InvalidCAMaterialError, match=r"not trust domain example\.org"):
        await load_or_generate_authority(store, "example.org", clock)


async def test_missing_file_loads_as_none(tmp_path: Path) -> None:
    assert await FileCAStore(tmp_path / "absent.pem").load() is None


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o666, 0o620, 0o602])
async def test_refuses_key_files_others_can_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "ca.pem"
    await FileCAStore(path).save(generate_root("cluster.local", FakeClock()).to_material())
    path.chmod(mode)
    with pytest.raises(CAStoreError, match=f"mode {mode:04o} lets group or others"):
        await FileCAStore(path).load()


async def test_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "real.pem"
    await FileCAStore(target).save(generate_root("cluster.local", FakeClock()).to_material())
    (tmp_path / "link.pem").symlink_to(target)
    with pytest.raises(CAStoreError, match="cannot open"):
        await FileCAStore(tmp_path / "link.pem").load()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "one private key and at least one certificate"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n", "truncated PEM block"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "one private key"),
    ],
)
async def test_refuses_malformed_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "ca.pem"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(CAStoreError, match=message):
        await FileCAStore(path).load()


async def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    material = CAMaterial(certificate_pem=b"c", key_pem=b"k")
    with pytest.raises(CAStoreError, match="cannot write CA file"):
        await FileCAStore(tmp_path / "missing-dir" / "ca.pem").save(material)
