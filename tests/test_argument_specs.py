"""Every role declares each input once, with the same default it ships.

A role's inputs live in two places, defaults/main.yml (what Ansible uses) and
meta/argument_specs.yml (what Ansible validates and what the docs show). They drift apart quietly;
these tests make the drift fail.
"""

from pathlib import Path

import pytest
import yaml

ROLES = sorted(p.parent.parent for p in Path(__file__).resolve().parent.parent.glob("roles/*/meta/argument_specs.yml"))
ALL_ROLES = sorted(p for p in (Path(__file__).resolve().parent.parent / "roles").iterdir() if p.is_dir())


def load(path: Path):
    return yaml.safe_load(path.read_text()) or {}


def test_every_role_has_argument_specs():
    assert ALL_ROLES, "no roles found"
    assert [r.name for r in ROLES] == [r.name for r in ALL_ROLES]


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_defaults_and_specs_declare_the_same_inputs(role):
    defaults = load(role / "defaults" / "main.yml")
    options = load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_specs_carry_the_defaults_values(role):
    defaults = load(role / "defaults" / "main.yml")
    options = load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    mismatched = {
        name: (options[name].get("default"), value)
        for name, value in defaults.items()
        if name in options and options[name].get("default") != value
    }
    assert mismatched == {}


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_every_input_is_prefixed_typed_and_described(role):
    options = load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    for name, spec in options.items():
        assert name.startswith(f"{role.name}_"), name
        assert "type" in spec, name
        assert spec.get("description"), name
