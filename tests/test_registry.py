"""kseg.registry: name -> object registries that fail loudly on unknown names."""

from __future__ import annotations

import pytest

from kseg.registry import Registry, RegistryError


def test_register_get_and_list_names_case_insensitively():
    reg: Registry[int] = Registry("loss")
    reg.register("Dice", 1)
    reg.register("bce", 2)
    assert reg.get("dice") == reg.get("DICE") == 1 and reg.get("bce") == 2
    assert reg.names() == ["bce", "dice"] and list(reg) == ["bce", "dice"] and len(reg) == 2
    assert "BCE" in reg and "focal" not in reg and 3 not in reg


def test_register_as_a_decorator_returns_the_object():
    reg: Registry = Registry("optimizer")

    @reg.register("adam")
    def make_adam() -> str:
        return "adam"

    assert make_adam() == "adam" and reg.get("adam") is make_adam


def test_case_sensitive_registry_keeps_names_apart():
    reg: Registry[str] = Registry("architecture", case_sensitive=True)
    reg.register("Unet", "u")
    reg.register("unet", "lower")
    assert reg.get("Unet") == "u" and reg.get("unet") == "lower" and "UNET" not in reg
    with pytest.raises(RegistryError):
        reg.get("UNET")


def test_unknown_name_lists_the_choices_and_is_a_key_error():
    reg: Registry[int] = Registry("scheduler")
    reg.register("cosine", 1)
    reg.register("onecycle", 2)
    with pytest.raises(RegistryError) as info:
        reg.get("cosin")
    assert isinstance(info.value, KeyError)
    # not quoted like a KeyError; the closest name is suggested
    assert str(info.value) == "scheduler: 'cosin' is not one of cosine, onecycle; did you mean cosine?"
    with pytest.raises(RegistryError) as info:
        reg.get("step")
    assert str(info.value) == "scheduler: 'step' is not one of cosine, onecycle"  # nothing close: no hint
    assert reg.unknown("x", key="sched.name") == "sched.name: 'x' is not one of cosine, onecycle"


def test_canonical_spelling_and_choices_in_registration_order():
    reg: Registry[int] = Registry("architecture")
    reg.register("UnetPlusPlus", 1)
    reg.register("FPN", 2)
    assert reg.choices() == ["UnetPlusPlus", "FPN"] and reg.names() == ["fpn", "unetplusplus"]
    assert reg.canonical("fpn") == "FPN" and reg.canonical("unetplusplus") == "UnetPlusPlus"
    with pytest.raises(RegistryError, match=r"model.arch: 'FNP' is not one of UnetPlusPlus, FPN; did you mean FPN\?"):
        reg.canonical("FNP", key="model.arch")


def test_a_name_registers_once():
    reg: Registry[int] = Registry("tta")
    reg.register("hflip", 1)
    with pytest.raises(ValueError, match="tta 'HFlip' is already registered"):
        reg.register("HFlip", 2)
    assert reg.get("hflip") == 1
