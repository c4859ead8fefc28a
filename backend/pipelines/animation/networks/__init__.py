"""SadTalker's networks, one module per family, with the official state-dict layout.

Every module's `state_dict()` keys and shapes equal ../../../shared/sadtalker/manifest.json
(tests/unit/animation/test_networks.py proves it), so the published checkpoints load with
`strict=True`. Forward passes are the plain reference computation; the renderer's fast path
(animation/fast_generator.py) is built from a loaded OcclusionAwareSPADEGenerator.
"""
