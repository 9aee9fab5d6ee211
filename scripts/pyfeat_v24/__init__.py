"""The v2.4 face_multitask_v2 model, which no py-feat release ships: only what the exporter needs.

Source: cosanlab/py-feat commit 3128756c4fb7860e676f9630ea4feeae34eb7704 (the last v2.4 commit,
the parent of ad98b3c2; the v2.4 range is b8225b1a..3128756c), files feat/multitask/model_v2.py,
feat/multitask/heads_v3.py and feat/multitask/inference.py at that commit.

Why nothing of the network is re-stated here: at 3128756c, model_v2.py and heads_v3.py differ from
py-feat 2.0.3's released files only by additions that are switched off for a v2.4 checkpoint
(`git diff 3128756c v2.0.3 -- feat/multitask/model_v2.py feat/multitask/heads_v3.py`):

  * heads_v3.py: identical (UnifiedFeatures always divides the mesh by image_size, as v2.4 needs:
    v2.4's mesh is in 224-px units).
  * model_v2.py: 2.0.3 adds three ModelV2Config fields (n_blendshape=0, bs_use_mesh=True,
    mesh_normalized=True), the BlendshapeHead class, and in MEGraphAUv2 a `self.blendshape` that is
    None when n_blendshape == 0, a `log_var_blendshape` only when n_blendshape > 0, and a
    "blendshapes" entry (None) in forward()'s dict. mesh_normalized is read only by BlendshapeHead.

A v2.4 checkpoint's config has no n_blendshape (3128756c's ModelV2Config lacks the field), so
2.0.3's MEGraphAUv2 builds exactly the 3128756c network: same modules, same state-dict keys, same
forward. The exporter therefore imports py-feat 2.0.3's released classes (.venv/pyfeat-2.0.3) and
this module adds what 3128756c does differently around them: its config fields (to filter a saved
config the way its loader does) and its loading rule. `check_release_code` verifies, at run time,
that the 2.0.3 code in use still has exactly that relation to 3128756c's config.
"""
from __future__ import annotations

V24_COMMIT = "3128756c4fb7860e676f9630ea4feeae34eb7704"
V24_RANGE = "b8225b1a..3128756c"

# 3128756c feat/multitask/model_v2.py:46-80, `class ModelV2Config` (field, default), in order.
# N_AU = 24, N_MESH = 478, N_EMOTION = 8 at model_v2.py:30-32.
V24_CONFIG_FIELDS: dict[str, object] = {
    "backbone": "convnextv2_tiny.fcmae_ft_in22k_in1k",
    "image_size": 224,
    "n_au": 24,
    "n_mesh": 478,
    "n_emotion": 8,
    "knn_k": 4,
    "afg_channels": 512,
    "mefl_channels": 512,
    "gcn_layers": 2,
    "drop_path_rate": 0.1,
    "pretrained": True,
    "emotion_head_dropout": 0.25,
    "use_dual_eye_gcn": True,
    "mefl_identity_init": False,
    "mefl_use_layer_scale": True,
    "use_head_v2": False,
    "use_head_v3": False,
    "unified_lmk_dim": 256,
    "drop_mefl": False,
    "emotion_use_au_prob": False,
    "emotion_au_prob_detach": True,
}

# The fields py-feat 2.0.3's ModelV2Config adds (2.0.3 model_v2.py:82-85), with their defaults.
# With these defaults the 2.0.3 network is the 3128756c network.
ADDED_IN_2_0_3: dict[str, object] = {
    "n_blendshape": 0,
    "bs_use_mesh": True,
    "mesh_normalized": True,
}


def check_release_code(model_v2) -> None:
    """Raises unless `model_v2` (py-feat 2.0.3's feat.multitask.model_v2) has 3128756c's config
    fields and defaults plus exactly ADDED_IN_2_0_3, the relation the module docstring relies on."""
    import dataclasses

    fields = {f.name: f.default for f in dataclasses.fields(model_v2.ModelV2Config)}
    expected = {**V24_CONFIG_FIELDS, **ADDED_IN_2_0_3}
    if fields != expected:
        diff = sorted(set(fields.items()) ^ set(expected.items()), key=str)
        raise RuntimeError(
            f"{model_v2.__file__}: ModelV2Config is not 3128756c's fields plus {sorted(ADDED_IN_2_0_3)} "
            f"(differences: {diff}); the v2.4 network cannot be built from this code")


def filter_config(saved_cfg: dict) -> tuple[dict, list[str]]:
    """3128756c inference.py:78-83: keep the keys that are ModelV2Config fields, except
    `pretrained` (forced False) and `use_head_v2` (taken from the saved config, default False).
    Returns (kwargs for ModelV2Config, the keys that were dropped)."""
    kept = {k: v for k, v in saved_cfg.items()
            if k in V24_CONFIG_FIELDS and k not in ("pretrained", "use_head_v2")}
    kept["pretrained"] = False
    kept["use_head_v2"] = saved_cfg.get("use_head_v2", False)
    dropped = sorted(k for k in saved_cfg if k not in V24_CONFIG_FIELDS)
    return kept, dropped


def build_model(model_v2, saved_cfg: dict):
    """The 3128756c MultitaskModel's network for `saved_cfg`, built with 2.0.3's classes.
    Returns (model, ModelV2Config, dropped config keys)."""
    check_release_code(model_v2)
    kwargs, dropped = filter_config(saved_cfg)
    cfg = model_v2.ModelV2Config(**kwargs)       # 2.0.3-only fields stay at ADDED_IN_2_0_3
    model = model_v2.MEGraphAUv2(cfg)
    if model.blendshape is not None:              # cannot happen with the defaults; guard anyway
        raise RuntimeError("v2.4 build produced a blendshape head")
    return model, cfg, dropped


def random_config() -> dict:
    """The config a v2.4 checkpoint carries, per the facts known about the published file
    (37,560,058 trainable parameters: 20 AUs, 7 emotions, v3 heads, MEFL dropped, emotion head
    reading the AU probabilities): 3128756c's fields with those values."""
    cfg = dict(V24_CONFIG_FIELDS)
    cfg.update(n_au=20, n_emotion=7, use_head_v3=True, drop_mefl=True, emotion_use_au_prob=True)
    return cfg
