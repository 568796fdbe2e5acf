import pytest

from efficientnet_tf import blocks, registry


OFFICIAL = sorted({s for spec in registry.MODELS.values() for s in spec.blocks})


@pytest.mark.parametrize("string", OFFICIAL)
def test_official_strings_round_trip(string):
    assert blocks.encode(blocks.decode(string)) == string


def test_decode_fields():
    v1 = blocks.decode("r2_k5_s22_e6_i24_o40_se0.25")
    assert (v1.repeats, v1.kernel_size, v1.strides, v1.expand_ratio) == (2, 5, 2, 6)
    assert (v1.input_filters, v1.output_filters, v1.se_ratio, v1.fused, v1.skip) == (24, 40, 0.25, False, True)
    v2 = blocks.decode("r4_k3_s2_e4_i24_o48_c1")
    assert v2.strides == 2 and v2.fused and v2.se_ratio is None
    assert not blocks.decode("r1_k3_s1_e1_i16_o16_noskip").skip
    assert blocks.encode(blocks.decode("r1_k3_s1_e1_i16_o16_noskip")) == "r1_k3_s1_e1_i16_o16_noskip"


@pytest.mark.parametrize(
    "string, message",
    [
        ("r1_k3_s11_e1_i32_o16_x5", "unknown token 'x5'"),
        ("r1_k3_s11_e1_i32", "missing field(s) o"),
        ("r1_k3_s12_e1_i32_o16", "bad stride 's12'"),
        ("r1_k3_s123_e1_i32_o16", "bad stride"),
        ("r1_k3x_s11_e1_i32_o16", "'k' needs a non-negative integer"),
        ("r1_k3_s11_e1_i32_o16_se0.2x", "'se' needs a number"),
        ("r1_k3_s11_e1_i32_o16_se1.5", "'se' must be in (0, 1]"),
        ("r1_k3_s11_e1_i32_o16_c2", "'c' must be 0"),
        ("r1_r2_k3_s11_e1_i32_o16", "appears twice"),
        ("r0_k3_s11_e1_i32_o16", "repeats must be at least 1"),
        ("", "non-empty"),
    ],
)
def test_malformed_strings_name_the_problem(string, message):
    with pytest.raises(ValueError) as info:
        blocks.decode(string)
    assert message in str(info.value)
    if string:
        assert repr(string) in str(info.value)


def test_decoded_args_are_immutable():
    args = blocks.decode("r1_k3_s1_e1_i32_o16_c1")
    with pytest.raises(AttributeError):
        args.repeats = 3
    assert args.replace(repeats=3).repeats == 3
