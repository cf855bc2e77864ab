"""Interactive and headless viewing of heads and tracked sequences (Open3D / Filament).

* :mod:`.params`: named sliders (expressions, joint rotations, identity) and ``--set`` parsing;
* :mod:`.mesh`: posing a model and its render layout (UV-seam split);
* :mod:`.envmaps`: procedural environment lights (and the capture's estimated light) baked to Filament IBL files;
* :mod:`.materials`: the appearance stage's PBR maps as textures (shading, map displays, world normals);
* :mod:`.scene`: the head in an Open3D scene (display modes, lights, cameras);
* :mod:`.fastshade`: interactive frames (the lit look per vertex, drawn unlit) while sliders move;
* :mod:`.headless`: offscreen rendering; :mod:`.app`: the GUI (``avatar3d view``);
* :mod:`.gaussians`, :mod:`.avatar_app`: Gaussian avatars (``avatar3d view AVATAR_DIR``) drawn by our rasterizer,
  headless and in the window; :mod:`.orbit`: the camera turned about the head (mouse, ``--yaw``);
* :mod:`.xvfb`, :mod:`.latency`: a private X server and the slider-to-screen latency probe.
"""

from .params import HeadParams, apply_settings, parse_settings, slider_specs
from .scene import DISPLAY_MODES, Lighting, project

__all__ = ["HeadParams", "apply_settings", "parse_settings", "slider_specs", "Lighting", "DISPLAY_MODES", "project"]
