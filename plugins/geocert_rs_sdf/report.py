"""Report sections of the rs-sdf plugin (``Plugin.report``), built from the run folder's files.

sdf: SDF slices (``sdf.npy``) with a slider over the z axis and a colour bar, the zero-level mesh
(``mesh.ply``) in an interactive 3D view, the error band against the exact distance.
render: test views vs ground truth (read from the scene folder the run recorded) vs error map, with a slider
over the views; PSNR / SSIM per view; the orbit as a video (``orbit.mp4``, ``orbit.gif`` as fallback); the
SDF slice and depth images; the extracted mesh in 3D and the Chamfer distance when there is one.
train-nerf: the training curve (``train_log.jsonl``) and the test views' PSNR / SSIM.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from geocert.report import Run, Section, heat_image, image, note, plot, rounded, slider, table, video

__all__ = ["sections", "MAX_FACES", "MAX_SLICE_RES"]

MAX_FACES = 40_000
"""Meshes with more triangles are shown decimated (vertex clustering) to at most this many (the page says so)."""
MAX_SLICE_RES = 64
"""SDF grids are strided to at most this many samples per axis for the slice viewer (the page says so)."""
_MAX_VIDEO_BYTES = 8 * 1024 * 1024
_MAX_VIEWS = 24


def sections(run: Run) -> list[Section]:
    if run.command == "sdf":
        return _sdf_sections(run)
    if run.command == "render":
        return _render_sections(run)
    if run.command == "train-nerf":
        return _train_sections(run)
    return []


# ---------------------------------------------------------------------------------------------- sdf


def _sdf_guarantee(m: dict) -> str | None:
    sig, sig_vox = m.get("sigma"), m.get("sigma_vox")
    if not isinstance(sig, (int, float)):
        return None
    vox = f" = {sig_vox:g} voxel(s)" if isinstance(sig_vox, (int, float)) else ""
    return (f"d(x) = σ·Φ⁻¹(p(x)), with p the occupancy blurred by the exact Gaussian N(0, σ²I) (σ = {sig:.4g}"
            f"{vox}), is 1-Lipschitz, so |d(x)| is a certified lower bound on the distance from x to the smoothed "
            "shape's surface {p = ½} (the zero level set, mesh.ply): no point closer than |d(x)| changes side. "
            "Positive inside; deterministic, no Monte-Carlo error.")


def _settings_with(cfg: Any, *keys: str, depth: int = 0) -> dict | None:
    """The first (breadth-first) dict in a nested config that has all ``keys``."""
    if not isinstance(cfg, dict) or depth > 3:
        return None
    if all(k in cfg for k in keys):
        return cfg
    for v in cfg.values():
        found = _settings_with(v, *keys, depth=depth + 1)
        if found is not None:
            return found
    return None


def _nerf_guarantee(run: Run) -> Section | None:
    """The RS-SDF claim of a NeRF trained with the rs-sdf density (σ of the occupancy grid, in voxels)."""
    cfg = _settings_with(run.params, "density", "sigma")  # train-nerf's, or render's nested train settings
    if cfg is None or cfg.get("density") != "rs-sdf" or not isinstance(cfg.get("sigma"), (int, float)):
        return None
    return Section("guarantee", (
        f"The geometry is an RS-SDF: d = σ·Φ⁻¹(p), with p the learned occupancy sigmoid(θ) blurred by the exact "
        f"Gaussian (σ = {cfg['sigma']:g} voxel(s)). σ·Φ⁻¹ of a Gaussian-blurred [0, 1] field is 1-Lipschitz, so "
        "at the voxel centres |d| lower-bounds the distance to the smoothed surface {p = ½} (between centres the "
        "grid is interpolated); the density is a function of d."), role="guarantee")


def _sdf_sections(run: Run) -> list[Section]:
    m = run.metrics
    out = []
    g = _sdf_guarantee(m)
    if g:
        out.append(Section("guarantee", g, role="guarantee"))
    out.append(Section("SDF slices", lambda: _slices(run)))
    if run.exists("mesh.ply"):
        out.append(Section("Zero-level mesh (3D)", lambda: _mesh(run, "mesh.ply")))
    band = m.get("band")
    if isinstance(band, dict):
        rows = [[k, v.get("voxels"), v.get("mean_abs_error_vox"), v.get("p95_abs_error_vox"),
                 v.get("max_abs_error_vox"), v.get("mean_signed_error_vox")]
                for k, v in band.items() if isinstance(v, dict)]
        out.append(Section("Error against the exact signed distance", table(
            ["region", "voxels", "mean |err| (vox)", "p95 |err| (vox)", "max |err| (vox)", "mean err (vox)"],
            rows, sortable=False, caption=str(band.get("definition", "")))))
    return out


def _slices(run: Run) -> str:
    import numpy as np

    if not run.exists("sdf.npy"):
        if run.exists("sdf_slice.png"):
            return image(run.read_bytes("sdf_slice.png"), "SDF slice (sdf.npy not in this folder)")
        return note("no sdf.npy in this run folder")
    vol = np.asarray(run.npy("sdf.npy"), dtype=np.float64)
    if vol.ndim != 3:
        return note(f"sdf.npy has shape {vol.shape}, not a 3D grid")
    run.mark_used("sdf_slice.png")
    stride = max(1, math.ceil(max(vol.shape) / MAX_SLICE_RES))
    v = vol[::stride, ::stride, ::stride]
    lim = float(np.nanmax(np.abs(v))) or 1.0
    grid = run.metrics.get("grid") or {}
    vs = float(grid.get("voxel_size") or 1.0) * stride
    origin = grid.get("origin") or [0.0, 0.0, 0.0]
    xs = rounded(origin[0] + vs * np.arange(v.shape[0]), 4)
    ys = rounded(origin[1] + vs * np.arange(v.shape[1]), 4)
    zs = origin[2] + vs * np.arange(v.shape[2])
    mid = v.shape[2] // 2
    # heatmap z is [rows = y, cols = x]: slice k is v[:, :, k].T
    steps = [{"method": "restyle", "label": f"{zs[k]:.3f}", "args": [{"z": [rounded(v[:, :, k].T, 3)]}]}
             for k in range(v.shape[2])]
    trace = {"type": "contour", "x": xs, "y": ys, "z": rounded(v[:, :, mid].T, 3), "colorscale": "RdBu",
             "zmid": 0, "zmin": -lim, "zmax": lim, "colorbar": {"title": {"text": "d (mesh units)"}},
             "contours": {"coloring": "heatmap", "start": 0, "end": 0, "size": 1, "showlines": True},
             "line": {"color": "black", "width": 2},
             "hovertemplate": "x %{x}<br>y %{y}<br>d %{z}<extra></extra>"}
    layout = {"sliders": [{"active": mid, "steps": steps, "currentvalue": {"prefix": "z = "},
                           "pad": {"t": 40}}],
              "xaxis": {"title": {"text": "x"}, "scaleanchor": "y"}, "yaxis": {"title": {"text": "y"}},
              "margin": {"l": 50, "r": 20, "t": 20, "b": 40}}
    cap = (f"grid {list(vol.shape)}" + (f", shown every {stride}th sample per axis ({list(v.shape)})" if stride > 1
                                        else "") + "; black line: the zero level set; positive inside. "
           "Drag the slider to move along z.")
    return plot([trace], layout, height=560, caption=cap)


_PLY_TYPES = {"char": "i1", "uchar": "u1", "int8": "i1", "uint8": "u1", "short": "<i2", "ushort": "<u2",
              "int16": "<i2", "uint16": "<u2", "int": "<i4", "uint": "<u4", "int32": "<i4", "uint32": "<u4",
              "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8"}


def _read_ply_triangles(path: Path) -> tuple[Any, Any] | None:
    """Vertices ``[V, 3]`` and triangles ``[F, 3]`` of a binary little-endian triangle PLY (what geocert
    writes) read with numpy alone; None for any other layout (then trimesh reads it)."""
    import numpy as np

    data = path.read_bytes()
    end = data.find(b"end_header\n")
    if end < 0:
        return None
    header = data[:end].decode("ascii", "replace").splitlines()
    if "format binary_little_endian 1.0" not in header:
        return None
    elements: list[tuple[str, int, list]] = []
    for line in header:
        parts = line.split()
        if parts[:1] == ["element"]:
            elements.append((parts[1], int(parts[2]), []))
        elif parts[:1] == ["property"] and elements:
            elements[-1][2].append(parts[1:])
    if [e[0] for e in elements] != ["vertex", "face"]:
        return None
    (_, nv, vprops), (_, nf, fprops) = elements
    if any(p[0] == "list" or p[0] not in _PLY_TYPES for p in vprops) or len(fprops) != 1 or fprops[0][0] != "list":
        return None
    vdt = np.dtype([(p[1], _PLY_TYPES[p[0]]) for p in vprops])
    cnt_t, idx_t = _PLY_TYPES.get(fprops[0][1]), _PLY_TYPES.get(fprops[0][2])
    if cnt_t is None or idx_t is None:
        return None
    body = data[end + len(b"end_header\n"):]
    vert = np.frombuffer(body, dtype=vdt, count=nv)
    fdt = np.dtype([("n", cnt_t), ("i", idx_t, (3,))])
    if len(body) < vdt.itemsize * nv + fdt.itemsize * nf:
        return None
    face = np.frombuffer(body, dtype=fdt, count=nf, offset=vdt.itemsize * nv)
    if nf and not np.all(face["n"] == 3):
        return None
    verts = np.stack([vert["x"], vert["y"], vert["z"]], axis=1).astype(np.float64)
    return verts, face["i"].astype(np.int64)


def _decimate(verts: Any, faces: Any, max_faces: int) -> tuple[Any, Any]:
    """Vertex-clustering decimation: merge the vertices of each cell of a grid (coarsened until at most
    ``max_faces`` triangles remain), drop the triangles that collapse. Keeps the shape closed; for display."""
    import numpy as np

    lo, hi = verts.min(axis=0), verts.max(axis=0)
    cell = float(np.linalg.norm(hi - lo)) / np.sqrt(max_faces)
    while True:
        q = np.floor((verts - lo) / cell).astype(np.int64)
        dims = q.max(axis=0) + 1
        _, inv = np.unique((q[:, 0] * dims[1] + q[:, 1]) * dims[2] + q[:, 2], return_inverse=True)
        inv = inv.reshape(-1)
        f = inv[faces]
        f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
        n = int(inv.max()) + 1  # drop duplicate triangles (same vertex set), keeping one winding
        srt = np.sort(f, axis=1)
        _, first = np.unique((srt[:, 0] * n + srt[:, 1]) * n + srt[:, 2], return_index=True)
        f = f[np.sort(first)]
        if len(f) <= max_faces:
            break
        cell *= 1.3
    v = np.zeros((n, 3))
    np.add.at(v, inv, verts)
    v /= np.bincount(inv, minlength=n)[:, None]
    return v, f


def _mesh(run: Run, rel: str) -> str:
    import numpy as np

    run.mark_used(rel)
    got = _read_ply_triangles(run.path(rel))
    if got is None:
        import trimesh

        mesh = trimesh.load(run.path(rel), force="mesh", process=False)
        got = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
    verts, faces = got
    if len(faces) == 0:
        return note(f"{rel} has no triangles")
    msg = f"{len(verts)} vertices, {len(faces)} triangles"
    if len(faces) > MAX_FACES:
        verts, faces = _decimate(verts, faces, MAX_FACES)
        msg += f"; shown decimated to {len(faces)} triangles (vertex clustering) to keep the page light"
    trace = {"type": "mesh3d", "x": rounded(verts[:, 0]), "y": rounded(verts[:, 1]), "z": rounded(verts[:, 2]),
             "i": faces[:, 0].tolist(), "j": faces[:, 1].tolist(), "k": faces[:, 2].tolist(),
             "color": "#8fb3d9", "flatshading": True, "name": rel,
             "lighting": {"ambient": 0.5, "diffuse": 0.7, "specular": 0.1, "facenormalsepsilon": 0}}
    layout = {"scene": {"aspectmode": "data"}, "margin": {"l": 0, "r": 0, "t": 10, "b": 0}}
    return plot([trace], layout, height=520, caption=f"{rel}: {msg}. Drag to rotate, scroll to zoom.")


# ---------------------------------------------------------------------------------------------- render


def _gt_view(scene: Path, view: str) -> Path | None:
    tf = scene / "transforms_test.json"
    stem = Path(view).stem
    try:
        frames = json.loads(tf.read_text(encoding="utf-8")).get("frames", [])
    except (OSError, ValueError):
        frames = []
    for fr in frames:
        fp = str(fr.get("file_path", ""))
        if Path(fp).stem == stem:
            p = (scene / fp).resolve()
            for cand in (p, p.with_suffix(".png"), Path(str(p) + ".png")):
                if cand.is_file():
                    return cand
    cand = scene / "test" / view
    return cand if cand.is_file() else None


def _on_white(a: Any) -> Any:
    import numpy as np

    a = np.asarray(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.shape[-1] == 4:
        alpha = a[..., 3:4].astype(np.float64) / 255.0
        a = (a[..., :3].astype(np.float64) * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return a[..., :3]


def _views(run: Run) -> str:
    import numpy as np
    from PIL import Image

    files = run.files("test/*.png")
    if not files:
        return note("no test/*.png views in this run folder")
    scene = Path(str(run.config.get("scene") or run.metrics.get("scene") or ""))
    per_view = {v.get("view"): v for v in run.metrics.get("per_view") or [] if isinstance(v, dict)}
    frames, labels, missing = [], [], 0
    width = 256
    for f in files[:_MAX_VIEWS]:
        name = Path(f).name
        pred = _on_white(run.image(f))
        figs = [image(pred, "rendered", width=width)]
        gt_path = _gt_view(scene, name) if str(scene) else None
        if gt_path is not None:
            import imageio.v3 as iio

            gt = _on_white(iio.imread(gt_path))
            if gt.shape[:2] != pred.shape[:2]:
                gt = np.asarray(Image.fromarray(gt).resize((pred.shape[1], pred.shape[0]), Image.BILINEAR))
            err = np.abs(pred.astype(np.float64) - gt.astype(np.float64)).mean(axis=-1) / 255.0
            emap, bar = heat_image(err, max(float(err.max()), 1e-6), cmap="magma", label="(mean |Δ| of RGB in [0, 1])")
            figs += [image(gt, "ground truth", width=width),
                     image(emap, "error map", width=width).replace("</figcaption>", f"<br>{bar}</figcaption>")]
        else:
            missing += 1
        pv = per_view.get(name, {})
        lab = name + (f" (PSNR {pv['psnr']:.2f} dB, SSIM {pv['ssim']:.3f})" if "psnr" in pv and "ssim" in pv else "")
        frames.append('<div class="gc-row">' + "".join(figs) + "</div>")
        labels.append(lab)
    out = slider(frames, labels, title="test view")
    if missing:
        out += note(f"ground truth not found for {missing} view(s) (scene folder {scene} gone?): rendered only",
                    "warn")
    if len(files) > _MAX_VIEWS:
        out += note(f"the first {_MAX_VIEWS} of {len(files)} test views are shown")
    return out


def _per_view_table(m: dict) -> str:
    pv = [v for v in m.get("per_view") or [] if isinstance(v, dict)]
    rows = [[v.get("view"), v.get("psnr"), v.get("ssim")] for v in pv]
    summary = []
    for key, label in (("test_psnr", "PSNR (dB, of the mean MSE)"), ("test_ssim", "SSIM (mean)")):
        if isinstance(m.get(key), (int, float)):
            summary.append([label, m[key]])
    cd = m.get("chamfer")
    if isinstance(cd, dict):
        summary += [[f"Chamfer {k}", v] for k, v in cd.items() if isinstance(v, (int, float))]
    sf = m.get("surface")
    if isinstance(sf, dict):
        summary += [[f"surface {k.replace('_', ' ')}", v] for k, v in sf.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)]
    und = m.get("undecided_voxels")
    if isinstance(und, dict):
        summary += [[f"undecided voxels ({k.replace('_', ' ')}, share of the grid)", v] for k, v in und.items()
                    if isinstance(v, (int, float))]
    for c in m.get("carving") or []:
        if isinstance(c, dict) and c.get("least_area"):
            summary.append([f"least-area pass (step {c.get('step')}): share of the grid removed, "
                            f"in {c.get('cuts')} cut(s)", c.get("removed_fraction")])
    out = table(["view", "PSNR (dB)", "SSIM"], rows,
                caption=f"{len(rows)} test view(s); click a header to sort")
    if summary:
        out = table(["metric", "value"], summary, sortable=False) + out
    if rows:
        out += plot([{"type": "bar", "x": [r[0] for r in rows], "y": [r[1] for r in rows], "name": "PSNR"}],
                    {"yaxis": {"title": {"text": "PSNR (dB)"}}}, height=300)
    return out


def _render_sections(run: Run) -> list[Section]:
    m = run.metrics
    g = _nerf_guarantee(run)
    out = [g] if g else []
    out += [Section("Test views: rendered vs ground truth", lambda: _views(run)),
           Section("PSNR / SSIM / surface", lambda: _per_view_table(m))]
    mp4 = run.read_bytes("orbit.mp4") if run.exists("orbit.mp4") else None
    gif = run.read_bytes("orbit.gif") if run.exists("orbit.gif") else None
    for f in run.files("orbit/*.png"):
        run.mark_used(f)
    if mp4 is not None and gif is not None and len(mp4) + len(gif) > _MAX_VIDEO_BYTES:
        gif = None
    if mp4 is not None or gif is not None:
        out.append(Section("Orbit", video(mp4, gif, "orbit" + (" (MP4, GIF fallback)" if mp4 and gif else ""),
                                          width=360)))
    imgs = [image(run.read_bytes(f), cap, width=w, pixelated=px)
            for f, cap, w, px in (("sdf_slice.png", "SDF slice through the centre", 520, False),
                                  ("depth.png", "depth", 300, True))
            if run.exists(f)]
    if imgs:
        out.append(Section("SDF slice and depth", '<div class="gc-row">' + "".join(imgs) + "</div>"))
    if run.exists("mesh.ply"):
        out.append(Section("Extracted mesh (3D)", lambda: _mesh(run, "mesh.ply")))
    elif "mesh" in m and m.get("mesh") is None:
        out.append(Section("Extracted mesh (3D)", note("no mesh: the field has no zero crossing at this resolution")))
    return out


# ---------------------------------------------------------------------------------------------- train-nerf


def _train_sections(run: Run) -> list[Section]:
    from geocert.io import read_jsonl

    g = _nerf_guarantee(run)
    out = [g] if g else []
    log = read_jsonl(run.path("train_log.jsonl")) if run.exists("train_log.jsonl") else []
    run.mark_used("train_log.jsonl")
    if log:
        steps = [r.get("step") for r in log]
        traces = [{"type": "scatter", "mode": "lines", "x": steps, "y": [r.get("loss") for r in log], "name": "loss"}]
        if any("train_psnr" in r for r in log):
            traces.append({"type": "scatter", "mode": "lines", "x": steps, "y": [r.get("train_psnr") for r in log],
                           "name": "train PSNR (dB)", "yaxis": "y2"})
        out.append(Section("Training", plot(traces, {
            "xaxis": {"title": {"text": "step"}}, "yaxis": {"title": {"text": "loss"}},
            "yaxis2": {"title": {"text": "PSNR (dB)"}, "overlaying": "y", "side": "right"},
            "legend": {"orientation": "h", "y": -0.3}}, height=360)))
    if run.metrics.get("per_view"):
        out.append(Section("Test views: PSNR / SSIM", lambda: _per_view_table(run.metrics)))
    return out
