"""Render geocert's committed test scenes of a real mesh with Blender (Cycles on the CPU).

Two kinds of scene, both of the Stanford bunny (npm package ``bunny`` 1.0.1, public domain):

``--kind synthetic``  the NeRF-synthetic (Blender) format of the original NeRF dataset::

    OUT/transforms_{train,val,test}.json   camera_angle_x, frames[{file_path: "./train/r_0", transform_matrix}],
                                           geocert_bound, geocert_mesh
    OUT/{train,val,test}/r_<i>.png         RGBA, transparent film (alpha = 0 on the background)
    OUT/mesh_gt.ply                        the rendered mesh, watertight, outward-facing, world frame

``--kind nerfstudio``  a capture-like scene in nerfstudio's ``transforms.json`` format: the object on a
textured ground disc under a gradient sky, JPG images, an OPENCV camera (k1, k2, p1, p2) with the principal
point off centre::

    OUT/transforms.json                    fl_x, fl_y, cx, cy, w, h, camera_model, k1, k2, p1, p2,
                                           frames[{file_path: "images/frame_00001.jpg", transform_matrix,
                                           geocert_mask_path}], train_filenames, test_filenames,
                                           applied_transform (identity), aabb_scale, geocert_mesh
    OUT/images/frame_<i>.jpg               distorted RGB
    OUT/masks/frame_<i>.png                object mask (255 = object, ground and sky 0), distorted

The masks are named by ``geocert_mask_path``, not nerfstudio's ``mask_path``: nerfstudio reads ``mask_path`` as
"0 = ignore this pixel", which would drop the ground and the sky from training.
    OUT/mesh_gt.ply                        the object's mesh (not the ground), world frame

Poses are camera-to-world in the OpenGL/Blender convention (the camera looks along −z, y up; world z up),
exactly Blender's ``camera.matrix_world``. Pixel coordinates follow nerfstudio: pixel (i, j) has its centre
at (i + 0.5, j + 0.5), so ``cx = w / 2`` is the image centre; the distortion is OpenCV's model applied to
``((u - cx) / fx, (v - cy) / fy)`` with v pointing down.

Blender cannot render OPENCV distortion: the nerfstudio kind renders a pinhole image with the same focal
length and a margin wide enough for every distorted pixel's source, then resamples it (``cv2.remap``) at the
undistorted position of each output pixel.

Usage (two stages; the first runs the second itself)::

    npm pack bunny && tar xzf bunny-1.0.1.tgz          # -> package/index.js
    nice -n 5 blender -b -t 2 -P tools/blender_scenes.py -- --kind synthetic \\
        --bunny package/index.js --out scenes/bunny_synthetic
    nice -n 5 blender -b -t 2 -P tools/blender_scenes.py -- --kind nerfstudio \\
        --bunny package/index.js --out scenes/capture_nerfstudio

Stage 1 (inside Blender, no numpy needed) renders pinhole frames into ``OUT/_raw/`` with ``cameras.json`` and
``mesh.json``; stage 2 runs ``PYTHON tools/blender_scenes.py --post --kind K --out OUT`` (``--python``,
default ``python3``, needs numpy, OpenCV and geocert), which writes the final layout, removes ``_raw`` and
checks the geometry: every ground-truth vertex facing the camera projects (through the full camera model) onto
an object pixel, and the silhouette ray cast from the mesh matches the rendered alpha/mask.
``python tools/blender_scenes.py --check OUT`` re-runs only the checks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

CAMERA_ANGLE_X = 0.6911112070083618  # the NeRF-synthetic scenes' horizontal field of view
SYN_RADIUS = 4.0
SYN_HALF = 0.95  # the synthetic object's largest half-extent; the scene box is [-1, 1]^3
SYN_BOUND = 1.0
NS_SIZE = 200
NS_FOCAL = 230.0
NS_CX, NS_CY = NS_SIZE / 2 + 6.0, NS_SIZE / 2 - 4.0
NS_DIST = {"k1": -0.05, "k2": 0.01, "p1": 0.002, "p2": -0.0015}
NS_HALF = 0.75  # the capture object's largest half-extent
NS_GROUND_RADIUS = 2.6


# ============================================================================================ shared (pure)
def parse_bunny_js(path: str | os.PathLike) -> tuple[list, list]:
    """Vertices ``[[x, y, z], ...]`` and triangles ``[[i, j, k], ...]`` of the npm ``bunny`` package's
    ``index.js`` (``exports.positions=[...]; exports.cells=[...]``), y up as in the Stanford scan."""
    text = Path(path).read_text()
    pos = re.search(r"positions\s*=\s*(\[\s*\[.*?\]\s*\])", text, re.S)
    cells = re.search(r"cells\s*=\s*(\[\s*\[.*?\]\s*\])", text, re.S)
    if not pos or not cells:
        raise SystemExit(f"blender_scenes: error: {path}: no 'positions=[...]' / 'cells=[...]' arrays")
    return json.loads(pos.group(1)), json.loads(cells.group(1))


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> list[list[float]]:
    """Camera-to-world 4×4 (nested lists) in the OpenGL convention: the camera looks along −z, y up."""
    def sub(a, b):
        return [a[i] - b[i] for i in range(3)]

    def cross(a, b):
        return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]

    def unit(a):
        n = math.sqrt(sum(x * x for x in a))
        return [x / n for x in a]

    fwd = unit(sub(target, eye))
    right = cross(fwd, up)
    if math.sqrt(sum(x * x for x in right)) < 1e-8:
        right = cross(fwd, (0.0, 1.0, 0.0))
    right = unit(right)
    true_up = cross(right, fwd)
    back = [-x for x in fwd]
    return [[right[i], true_up[i], back[i], eye[i]] for i in range(3)] + [[0.0, 0.0, 0.0, 1.0]]


def synthetic_poses(count: int, rng: random.Random) -> list:
    """Like the bundled scene: azimuth uniform, sin(elevation) uniform in [sin −15°, sin 70°], radius 4."""
    poses = []
    for _ in range(count):
        az = rng.uniform(0.0, 2 * math.pi)
        el = math.asin(rng.uniform(math.sin(math.radians(-15.0)), math.sin(math.radians(70.0))))
        eye = [SYN_RADIUS * math.cos(el) * math.cos(az), SYN_RADIUS * math.cos(el) * math.sin(az),
               SYN_RADIUS * math.sin(el)]
        poses.append(look_at(eye))
    return poses


def capture_poses(count: int, rng: random.Random, target: tuple) -> list:
    """A hand-held-like orbit: 1.5 turns, elevation swinging between 12° and 55°, radius 3.0–3.6, the aim
    jittered by a few centimetres."""
    poses = []
    for k in range(count):
        t = k / count
        az = 3 * math.pi * t + rng.uniform(-0.05, 0.05)
        el = math.radians(33.0 + 21.0 * math.sin(2 * math.pi * 2.5 * t) + rng.uniform(-2.0, 2.0))
        r = 3.3 + 0.3 * math.sin(2 * math.pi * 1.7 * t + 1.0)
        eye = [target[0] + r * math.cos(el) * math.cos(az), target[1] + r * math.cos(el) * math.sin(az),
               target[2] + r * math.sin(el)]
        aim = [target[i] + rng.uniform(-0.05, 0.05) for i in range(3)]
        poses.append(look_at(eye, aim))
    return poses


def opencv_distort(x, y, d: dict):
    """OpenCV's radial-tangential model on normalised coordinates (y down); floats or numpy arrays."""
    r2 = x * x + y * y
    radial = 1 + d["k1"] * r2 + d["k2"] * r2 * r2
    return (x * radial + 2 * d["p1"] * x * y + d["p2"] * (r2 + 2 * x * x),
            y * radial + d["p1"] * (r2 + 2 * y * y) + 2 * d["p2"] * x * y)


def opencv_undistort(xd, yd, d: dict, iters: int = 60):
    """Inverse of :func:`opencv_distort` by fixed-point iteration (mild distortion: converges); floats or
    numpy arrays."""
    x, y = xd, yd
    for _ in range(iters):
        dx, dy = opencv_distort(x, y, d)
        x, y = x - (dx - xd), y - (dy - yd)
    return x, y


def capture_margin(size: int = NS_SIZE) -> int:
    """Pixels to add on every side of the pinhole render so that each distorted pixel's source lies inside."""
    need = 0.0
    for k in range(size + 1):
        for u, v in ((k, 0), (k, size), (0, k), (size, k)):
            x, y = opencv_undistort((u - NS_CX) / NS_FOCAL, (v - NS_CY) / NS_FOCAL, NS_DIST)
            su, sv = NS_FOCAL * x + NS_CX, NS_FOCAL * y + NS_CY
            need = max(need, -su, su - size, -sv, sv - size)
    return int(math.ceil(need)) + 3


# ============================================================================================ stage 1: Blender
def _bl_mesh(verts: list, faces: list, half: float, on_ground: bool):
    """The bunny as a Blender object: z up, holes filled, one Catmull–Clark level, triangulated, outward
    normals, scaled so its largest half-extent is ``half``; centred at the origin, or standing on z = 0."""
    import bmesh
    import bpy

    me = bpy.data.meshes.new("bunny_raw")
    me.from_pydata([(x, -z, y) for x, y, z in verts], [], [tuple(f) for f in faces])  # y up -> z up
    bm = bmesh.new()
    bm.from_mesh(me)
    bmesh.ops.remove_doubles(bm, verts=bm.verts, dist=1e-7)
    bmesh.ops.holes_fill(bm, edges=bm.edges, sides=0)
    bmesh.ops.triangulate(bm, faces=bm.faces)
    bm.to_mesh(me)
    bm.free()
    obj = bpy.data.objects.new("bunny_raw", me)
    bpy.context.scene.collection.objects.link(obj)
    sub = obj.modifiers.new("subsurf", "SUBSURF")
    sub.levels = sub.render_levels = 1
    dg = bpy.context.evaluated_depsgraph_get()
    smooth = bpy.data.meshes.new_from_object(obj.evaluated_get(dg))
    bpy.data.objects.remove(obj)
    bm = bmesh.new()
    bm.from_mesh(smooth)
    bmesh.ops.triangulate(bm, faces=bm.faces)
    bmesh.ops.recalc_face_normals(bm, faces=bm.faces)
    lo = [min(v.co[i] for v in bm.verts) for i in range(3)]
    hi = [max(v.co[i] for v in bm.verts) for i in range(3)]
    scale = half / max((hi[i] - lo[i]) / 2 for i in range(3))
    centre = [(hi[i] + lo[i]) / 2 for i in range(3)]
    for v in bm.verts:
        p = [(v.co[i] - centre[i]) * scale for i in range(3)]
        if on_ground:
            p[2] += (hi[2] - lo[2]) / 2 * scale
        v.co = p
    open_edges = sum(1 for e in bm.edges if not e.is_manifold)
    bm.to_mesh(smooth)
    bm.free()
    for poly in smooth.polygons:
        poly.use_smooth = True
    obj = bpy.data.objects.new("bunny", smooth)
    bpy.context.scene.collection.objects.link(obj)
    return obj, open_edges


def _bl_node(nodes, kind: str, **inputs):
    node = nodes.new(kind)
    for name, value in inputs.items():
        node.inputs[name].default_value = value
    return node


def _bl_ramp(nodes, links, src, stops: list):
    ramp = nodes.new("ShaderNodeValToRGB")
    elems = ramp.color_ramp.elements
    for k, (pos, col) in enumerate(stops):
        e = elems[k] if k < len(elems) else elems.new(pos)
        e.position, e.color = pos, col
    links.new(src, ramp.inputs["Fac"])
    return ramp


def _bl_bunny_material():
    """Procedural fur-like albedo (noise + Voronoi spots + a painted band) on object coordinates; roughness
    from a second noise, so that some patches are glossy (0.12) and others matte (0.7)."""
    import bpy

    mat = bpy.data.materials.new("bunny")
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    coord = nodes.new("ShaderNodeTexCoord")
    noise = _bl_node(nodes, "ShaderNodeTexNoise", Scale=4.0, Detail=6.0, Roughness=0.55)
    links.new(coord.outputs["Object"], noise.inputs["Vector"])
    fur = _bl_ramp(nodes, links, noise.outputs["Fac"],
                   [(0.35, (0.42, 0.24, 0.11, 1)), (0.65, (0.85, 0.68, 0.45, 1))])
    spots = _bl_node(nodes, "ShaderNodeTexVoronoi", Scale=5.0)
    links.new(coord.outputs["Object"], spots.inputs["Vector"])
    spot_mask = _bl_ramp(nodes, links, spots.outputs["Distance"], [(0.18, (1, 1, 1, 1)), (0.22, (0, 0, 0, 1))])
    mix = nodes.new("ShaderNodeMixRGB")
    mix.inputs["Color2"].default_value = (0.12, 0.08, 0.06, 1)
    links.new(spot_mask.outputs["Color"], mix.inputs["Fac"])
    links.new(fur.outputs["Color"], mix.inputs["Color1"])
    wave = _bl_node(nodes, "ShaderNodeTexWave", Scale=1.2, Distortion=2.0)
    wave.bands_direction = "Z"
    links.new(coord.outputs["Object"], wave.inputs["Vector"])
    band = _bl_ramp(nodes, links, wave.outputs["Fac"], [(0.86, (0, 0, 0, 1)), (0.9, (1, 1, 1, 1))])
    mix2 = nodes.new("ShaderNodeMixRGB")
    mix2.inputs["Color2"].default_value = (0.05, 0.25, 0.75, 1)
    links.new(band.outputs["Color"], mix2.inputs["Fac"])
    links.new(mix.outputs["Color"], mix2.inputs["Color1"])
    links.new(mix2.outputs["Color"], bsdf.inputs["Base Color"])
    gloss = _bl_node(nodes, "ShaderNodeTexNoise", Scale=1.5, Detail=2.0)
    links.new(coord.outputs["Object"], gloss.inputs["Vector"])
    rough = _bl_ramp(nodes, links, gloss.outputs["Fac"], [(0.45, (0.12, 0.12, 0.12, 1)), (0.55, (0.7, 0.7, 0.7, 1))])
    links.new(rough.outputs["Color"], bsdf.inputs["Roughness"])
    bsdf.inputs["Specular"].default_value = 0.6
    return mat


def _bl_ground_material():
    """A checkerboard of tiles with noisy wood-like grain, fairly matte."""
    import bpy

    mat = bpy.data.materials.new("ground")
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    coord = nodes.new("ShaderNodeTexCoord")
    check = _bl_node(nodes, "ShaderNodeTexChecker", Scale=3.0, Color1=(0.55, 0.52, 0.45, 1),
                     Color2=(0.22, 0.30, 0.26, 1))
    links.new(coord.outputs["Object"], check.inputs["Vector"])
    grain = _bl_node(nodes, "ShaderNodeTexNoise", Scale=9.0, Detail=4.0)
    links.new(coord.outputs["Object"], grain.inputs["Vector"])
    mix = nodes.new("ShaderNodeMixRGB")
    mix.blend_type = "MULTIPLY"
    mix.inputs["Fac"].default_value = 0.6
    links.new(check.outputs["Color"], mix.inputs["Color1"])
    links.new(grain.outputs["Color"], mix.inputs["Color2"])
    links.new(mix.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.55
    return mat


def _bl_world(strength: float):
    """A gradient sky: warm grey below the horizon, pale at the horizon, blue at the zenith."""
    import bpy

    world = bpy.data.worlds.new("sky")
    world.use_nodes = True
    nodes, links = world.node_tree.nodes, world.node_tree.links
    bg = nodes["Background"]
    bg.inputs["Strength"].default_value = strength
    coord = nodes.new("ShaderNodeTexCoord")
    sep = nodes.new("ShaderNodeSeparateXYZ")
    links.new(coord.outputs["Generated"], sep.inputs["Vector"])
    # a world's Generated coordinates are the ray direction: map its z from [-1, 1] to the ramp's [0, 1]
    to_unit = _bl_node(nodes, "ShaderNodeMapRange", **{"From Min": -1.0, "From Max": 1.0})
    links.new(sep.outputs["Z"], to_unit.inputs["Value"])
    ramp = _bl_ramp(nodes, links, to_unit.outputs["Result"], [(0.45, (0.35, 0.30, 0.25, 1)),
                                                              (0.5, (0.85, 0.88, 0.9, 1)),
                                                              (1.0, (0.25, 0.45, 0.85, 1))])
    links.new(ramp.outputs["Color"], bg.inputs["Color"])
    bpy.context.scene.world = world


def _bl_setup(size_x: int, size_y: int, samples: int, transparent: bool):
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_adaptive_sampling = True
    scene.cycles.adaptive_threshold = 0.02
    scene.cycles.use_denoising = False  # this Blender build has no OpenImageDenoise
    scene.cycles.max_bounces = 4
    scene.cycles.sample_clamp_indirect = 5.0
    scene.cycles.seed = 0
    scene.render.threads_mode = "FIXED"
    scene.render.threads = 2
    scene.render.use_persistent_data = True
    scene.render.resolution_x, scene.render.resolution_y = size_x, size_y
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = transparent
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA" if transparent else "RGB"
    scene.render.image_settings.color_depth = "8"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    return scene


def _bl_sun(energy: float, direction_deg=(40.0, 0.0, 35.0)):
    import bpy

    light = bpy.data.lights.new("sun", "SUN")
    light.energy = energy
    light.angle = math.radians(4.0)
    obj = bpy.data.objects.new("sun", light)
    obj.rotation_euler = [math.radians(a) for a in direction_deg]
    bpy.context.scene.collection.objects.link(obj)


def _bl_camera(angle_x: float, shift_x: float = 0.0, shift_y: float = 0.0):
    import bpy

    cam = bpy.data.cameras.new("cam")
    cam.sensor_fit = "HORIZONTAL"
    cam.lens_unit = "FOV"
    cam.angle_x = angle_x
    cam.shift_x, cam.shift_y = shift_x, shift_y
    cam.clip_start, cam.clip_end = 0.05, 100.0
    obj = bpy.data.objects.new("cam", cam)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.scene.camera = obj
    return obj


def _bl_render_all(cam, names_poses: list, raw: Path) -> float:
    import bpy
    from mathutils import Matrix

    scene = bpy.context.scene
    t0 = time.time()
    for k, (name, c2w) in enumerate(names_poses):
        cam.matrix_world = Matrix(c2w)
        scene.render.filepath = str(raw / f"{name}.png")
        bpy.ops.render.render(write_still=True)
        print(f"blender_scenes: {k + 1}/{len(names_poses)} {name} {time.time() - t0:.0f} s", flush=True)
    return time.time() - t0


def _bl_dump_mesh(obj, path: Path) -> None:
    me = obj.data
    json.dump({"vertices": [list(v.co) for v in me.vertices],
               "faces": [list(p.vertices) for p in me.polygons]}, path.open("w"))


def blender_main(args: argparse.Namespace) -> None:
    verts, faces = parse_bunny_js(args.bunny)
    out = Path(args.out)
    raw = out / "_raw"
    if out.exists():
        shutil.rmtree(out)
    raw.mkdir(parents=True)
    rng = random.Random(args.seed)
    meta: dict = {"kind": args.kind}
    if args.kind == "synthetic":
        _bl_setup(args.size, args.size, args.samples, transparent=True)
        obj, open_edges = _bl_mesh(verts, faces, SYN_HALF, on_ground=False)
        obj.data.materials.append(_bl_bunny_material())
        _bl_world(0.6)
        _bl_sun(3.0)
        cam = _bl_camera(CAMERA_ANGLE_X)
        counts = {"train": args.n_train, "val": args.n_val, "test": args.n_test}
        jobs = []
        for split, n in counts.items():
            jobs += [(f"{split}/r_{i}", pose) for i, pose in enumerate(synthetic_poses(n, rng))]
        for split in counts:
            (raw / split).mkdir()
        meta.update(camera_angle_x=CAMERA_ANGLE_X, splits=counts)
    else:
        margin = capture_margin(args.size)
        big = args.size + 2 * margin
        _bl_setup(big, big, args.samples, transparent=False)
        obj, open_edges = _bl_mesh(verts, faces, NS_HALF, on_ground=True)
        obj.data.materials.append(_bl_bunny_material())
        import bpy

        bpy.ops.mesh.primitive_circle_add(vertices=96, radius=NS_GROUND_RADIUS, fill_type="NGON")
        ground = bpy.context.active_object
        ground.data.materials.append(_bl_ground_material())
        _bl_world(1.2)
        _bl_sun(3.5)
        # Pinhole render of size big × big with focal NS_FOCAL and principal point (cx + margin, cy + margin);
        # Blender's shift moves the frustum: cx = W/2 - shift_x * W, cy = H/2 + shift_y * W (W the larger side).
        angle_x = 2 * math.atan(big / (2 * NS_FOCAL))
        cam = _bl_camera(angle_x, shift_x=(big / 2 - (NS_CX + margin)) / big, shift_y=((NS_CY + margin) - big / 2) / big)
        n = args.n_train + args.n_test
        target = (0.0, 0.0, 0.55 * NS_HALF)
        jobs = [(f"frame_{i + 1:05d}", pose) for i, pose in enumerate(capture_poses(n, rng, target))]
        meta.update(margin=margin, size=args.size, n_test=args.n_test)
    meta["open_edges"] = open_edges
    meta["poses"] = {name: pose for name, pose in jobs}
    _bl_dump_mesh(obj, raw / "mesh.json")
    seconds = _bl_render_all(cam, jobs, raw)
    if args.kind == "nerfstudio":
        seconds += _bl_render_masks(cam, jobs, raw, obj)
    meta["render_seconds"] = round(seconds, 1)
    meta["samples"] = args.samples
    (raw / "cameras.json").write_text(json.dumps(meta))
    print(f"blender_scenes: rendered {len(jobs)} views in {seconds:.0f} s; open edges {open_edges}", flush=True)
    if not args.no_post:
        cmd = [args.python, str(Path(__file__).resolve()), "--post", "--kind", args.kind, "--out", str(out)]
        sys.exit(subprocess.call(cmd))


def _bl_render_masks(cam, jobs: list, raw: Path, obj) -> float:
    """Object masks: the alpha of a render with transparent film, the object emission-white, the ground
    invisible to camera rays (nothing else can hide the object: the cameras are above the ground)."""
    import bpy

    scene = bpy.context.scene
    scene.cycles.samples = 16
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.max_bounces = 0
    scene.render.film_transparent = True  # the mask is the alpha channel: linear coverage, unlike sRGB colour
    scene.render.image_settings.color_mode = "RGBA"
    white = bpy.data.materials.new("mask_white")
    white.use_nodes = True
    nt = white.node_tree
    nt.nodes.remove(nt.nodes["Principled BSDF"])
    em = _bl_node(nt.nodes, "ShaderNodeEmission", Color=(1, 1, 1, 1), Strength=1.0)
    nt.links.new(em.outputs["Emission"], nt.nodes["Material Output"].inputs["Surface"])
    obj.data.materials[0] = white
    for o in scene.objects:
        if o.type == "MESH" and o is not obj:
            o.visible_camera = False
    scene.world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
    for o in [o for o in scene.objects if o.type == "LIGHT"]:
        o.hide_render = True
    (raw / "masks").mkdir()
    return _bl_render_all(cam, [(f"masks/{n}", p) for n, p in jobs], raw)


# ============================================================================================ stage 2: numpy
def _post(args: argparse.Namespace) -> int:
    import numpy as np

    from geocert.io import read_image, write_image, write_ply

    out = Path(args.out)
    raw = out / "_raw"
    cams = json.loads((raw / "cameras.json").read_text())
    mesh = json.loads((raw / "mesh.json").read_text())
    verts = np.asarray(mesh["vertices"], dtype=np.float32)
    faces = np.asarray(mesh["faces"], dtype=np.int32)
    write_ply(out / "mesh_gt.ply", verts, faces=faces)
    poses = cams["poses"]
    if cams["kind"] == "synthetic":
        from PIL import Image

        for split, n in cams["splits"].items():
            (out / split).mkdir(exist_ok=True)
            frames = []
            for i in range(n):
                name = f"{split}/r_{i}"
                Image.open(raw / f"{name}.png").save(out / f"{name}.png", optimize=True)  # lossless, ~30% smaller
                frames.append({"file_path": f"./{name}", "rotation": 0.0, "transform_matrix": poses[name]})
            doc = {"camera_angle_x": cams["camera_angle_x"], "frames": frames,
                   "geocert_bound": SYN_BOUND, "geocert_mesh": "mesh_gt.ply"}
            (out / f"transforms_{split}.json").write_text(json.dumps(doc, indent=1))
    else:
        import cv2

        size, margin = cams["size"], cams["margin"]
        map_x, map_y = distortion_maps(size, margin)
        (out / "images").mkdir(exist_ok=True)
        (out / "masks").mkdir(exist_ok=True)
        frames, names = [], sorted(poses)
        for name in names:
            img = read_image(raw / f"{name}.png")[..., :3]
            warped = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            cv2.imwrite(str(out / "images" / f"{name}.jpg"), warped[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
            m = read_image(raw / "masks" / f"{name}.png")[..., 3].astype(np.float32)
            mw = cv2.remap(m, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            write_image(out / "masks" / f"{name}.png", np.where(mw >= 127.5, 255, 0).astype(np.uint8))
            frames.append({"file_path": f"images/{name}.jpg", "geocert_mask_path": f"masks/{name}.png",
                           "transform_matrix": poses[name]})
        every = max(1, len(names) // cams["n_test"])
        test = [f["file_path"] for k, f in enumerate(frames) if k % every == every - 1][: cams["n_test"]]
        train = [f["file_path"] for f in frames if f["file_path"] not in test]
        doc = {"camera_model": "OPENCV", "fl_x": NS_FOCAL, "fl_y": NS_FOCAL, "cx": NS_CX, "cy": NS_CY,
               "w": size, "h": size, **NS_DIST, "aabb_scale": 2,
               "applied_transform": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
               "frames": frames, "train_filenames": train, "test_filenames": test,
               "geocert_mesh": "mesh_gt.ply"}
        (out / "transforms.json").write_text(json.dumps(doc, indent=1))
    info = {k: cams[k] for k in ("render_seconds", "samples", "open_edges")}
    shutil.rmtree(raw)
    print(f"blender_scenes: wrote {out} ({info})")
    return _check(out)


def distortion_maps(size: int, margin: int):
    """``cv2.remap`` maps ``[size, size]`` float32: for each output (distorted) pixel centre, its position in the
    pinhole render of size ``size + 2 margin`` (pixel-centre coordinates, as cv2 counts)."""
    import numpy as np

    v, u = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    x, y = opencv_undistort((u - NS_CX) / NS_FOCAL, (v - NS_CY) / NS_FOCAL, NS_DIST)
    map_x = NS_FOCAL * x + NS_CX + margin - 0.5
    map_y = NS_FOCAL * y + NS_CY + margin - 0.5
    if map_x.min() < 0 or map_y.min() < 0 or map_x.max() > size + 2 * margin - 1 or map_y.max() > size + 2 * margin - 1:
        raise SystemExit("blender_scenes: error: the pinhole render's margin is too small for the distortion")
    return map_x.astype(np.float32), map_y.astype(np.float32)


# ============================================================================================ checks
def project_points(points, c2w, fx: float, fy: float, cx: float, cy: float, dist=None):
    """Pixel coordinates ``[N, 2]`` (nerfstudio's: pixel i spans [i, i + 1]) and camera depth ``[N]`` of world
    points ``[N, 3]`` seen by an OpenGL camera-to-world ``c2w`` [4, 4] with the OpenCV distortion ``dist``
    (dict k1, k2, p1, p2, or None)."""
    import numpy as np

    c2w = np.asarray(c2w, dtype=np.float64)
    cam = (np.asarray(points, dtype=np.float64) - c2w[:3, 3]) @ c2w[:3, :3]  # world -> camera (OpenGL)
    depth = -cam[:, 2]
    x, y = cam[:, 0] / depth, -cam[:, 1] / depth  # OpenCV: y down
    if dist:
        r2 = x * x + y * y
        radial = 1 + dist["k1"] * r2 + dist["k2"] * r2 * r2
        x, y = (x * radial + 2 * dist["p1"] * x * y + dist["p2"] * (r2 + 2 * x * x),
                y * radial + dist["p1"] * (r2 + 2 * y * y) + 2 * dist["p2"] * x * y)
    return np.stack([fx * x + cx, fy * y + cy], -1), depth


def visible_vertices(verts, faces, eye):
    """Boolean ``[V]``: vertices with at least one adjacent face whose outward normal faces ``eye`` (a cheap
    stand-in for visibility: back-facing vertices may project onto the silhouette's edge only)."""
    import numpy as np

    tri = verts[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    front = (n * (eye - tri.mean(1))).sum(-1) > 0
    vis = np.zeros(len(verts), dtype=bool)
    vis[faces[front].ravel()] = True
    return vis


def vertex_hit_fraction(verts, faces, c2w, mask, fx, fy, cx, cy, dist=None) -> tuple[float, float]:
    """Fractions of the mesh's vertices (facing the camera, in the image) that project onto pixels where
    ``mask`` [H, W] is true, and onto pixels within one pixel (8-neighbourhood) of such a pixel: vertices on
    the silhouette fall on its edge pixels, whose coverage the pixel filter spreads to either side of 0.5."""
    import numpy as np

    uv, depth = project_points(verts, c2w, fx, fy, cx, cy, dist)
    h, w = mask.shape
    iu, iv = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    ok = visible_vertices(verts, faces, np.asarray(c2w)[:3, 3]) & (depth > 0)
    ok &= (iu >= 0) & (iu < w) & (iv >= 0) & (iv < h)
    padded = np.pad(mask, 1)
    grown = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            grown |= padded[dy:dy + h, dx:dx + w]
    return float(mask[iv[ok], iu[ok]].mean()), float(grown[iv[ok], iu[ok]].mean())


def silhouette_iou(verts, faces, c2w, mask, fx, fy, cx, cy, dist=None) -> float:
    """IoU of ``mask`` [H, W] with the mesh's silhouette ray cast (open3d) through each pixel centre, the rays
    undistorted with OpenCV's model when ``dist`` is given."""
    import numpy as np
    import open3d as o3d

    h, w = mask.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    x, y = (u - cx) / fx, (v - cy) / fy
    if dist:
        x, y = opencv_undistort(x, y, dist)
    c2w = np.asarray(c2w, dtype=np.float64)
    d_cam = np.stack([x, -y, -np.ones_like(x)], -1)
    d_world = d_cam @ c2w[:3, :3].T
    rays = np.concatenate([np.broadcast_to(c2w[:3, 3], d_world.shape), d_world], -1).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(verts, np.float32)), o3d.core.Tensor(np.asarray(faces, np.uint32)))
    sil = np.isfinite(scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy())
    return float((sil & mask).sum() / max((sil | mask).sum(), 1))


def _check(out: Path, views: int = 6) -> int:
    """Geometry checks of a written scene; prints the numbers, returns 0 when they pass."""
    import numpy as np
    import trimesh

    from geocert.io import read_image

    mesh = trimesh.load(out / "mesh_gt.ply", force="mesh", process=False)
    verts, faces = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces)
    print(f"mesh_gt.ply: {len(verts)} vertices, {len(faces)} faces, watertight {mesh.is_watertight}, "
          f"volume {mesh.volume:.3f}, bounds {np.round(mesh.bounds, 3).tolist()}")
    results = []
    if (out / "transforms_train.json").is_file():
        meta = json.loads((out / "transforms_train.json").read_text())
        for fr in meta["frames"][:views]:
            img = read_image(out / (fr["file_path"] + ".png"))
            w = img.shape[1]
            f = 0.5 * w / math.tan(0.5 * meta["camera_angle_x"])
            mask = img[..., 3] > 127
            args = (verts, faces, fr["transform_matrix"], mask, f, f, w / 2, img.shape[0] / 2)
            results.append((fr["file_path"], *vertex_hit_fraction(*args), silhouette_iou(*args)))
    else:
        meta = json.loads((out / "transforms.json").read_text())
        dist = {k: meta[k] for k in ("k1", "k2", "p1", "p2")}
        for fr in meta["frames"][:views]:
            mask = read_image(out / fr["geocert_mask_path"]) > 127
            args = (verts, faces, fr["transform_matrix"], mask, meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"])
            results.append((fr["file_path"], *vertex_hit_fraction(*args, dist=dist),
                            silhouette_iou(*args, dist=dist), silhouette_iou(*args)))
    ok = True
    for r in results:
        line = f"  {r[0]}: vertices on the object {r[1]:.4f} (within 1 px {r[2]:.4f}), silhouette IoU {r[3]:.4f}"
        if len(r) > 4:
            line += f", IoU ignoring the distortion {r[4]:.4f}"
            ok &= r[4] < r[3]
        print(line)
        ok &= r[1] >= 0.85 and r[2] >= 0.999 and r[3] >= 0.98
    print("checks", "passed" if ok else "FAILED")
    return 0 if ok else 1


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="blender_scenes", description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", choices=("synthetic", "nerfstudio"), default="synthetic")
    p.add_argument("--out", required=False)
    p.add_argument("--bunny", default="package/index.js", help="index.js of the npm package 'bunny'")
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--samples", type=int, default=48)
    p.add_argument("--n-train", type=int, default=100)
    p.add_argument("--n-val", type=int, default=10)
    p.add_argument("--n-test", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--python", default="python3", help="interpreter of stage 2 (numpy, OpenCV, geocert)")
    p.add_argument("--no-post", action="store_true", help="stop after stage 1")
    p.add_argument("--post", action="store_true", help="stage 2 only (after Blender)")
    p.add_argument("--check", metavar="SCENE", help="only check a written scene")
    return p.parse_args(argv)


if __name__ == "__main__":
    _argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    _args = _parse(_argv)
    try:
        import bpy  # noqa: F401

        _in_blender = True
    except ImportError:
        _in_blender = False
    if _in_blender:
        blender_main(_args)
    elif _args.check:
        sys.exit(_check(Path(_args.check)))
    elif _args.post:
        sys.exit(_post(_args))
    else:
        raise SystemExit("blender_scenes: error: run me with blender -b -P (see the docstring), or --post / --check")
