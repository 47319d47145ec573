"""Procedural indoor scenes: a ray-cast box room with furniture-like primitives.

Every pixel is cast at once with numpy, so a 425x560 scene takes about a second and every
label (class, instance, part, depth, normal, boundary) is exact rather than estimated.
Conventions: world y is up, the floor is y=0; the camera frame is OpenGL's (x right, y up,
z towards the viewer) and depth is the distance along -z_cam (NYUD's convention, not ray
length). Instances: objects are 1..n, room surfaces are negative (-1 floor, -2 ceiling,
-3..-6 walls). Edges mark one pixel of each 4-neighbour pair whose class or instance differs:
the nearer one at an occlusion, else the left/top one (see ``_edges``).
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

CLASS_NAMES = ("wall", "floor", "ceiling", "cabinet", "table", "bed", "crate", "ball", "lamp", "stool")
PART_NAMES = ("background", "top", "upper", "middle", "lower")
OCCLUSION_JUMP = 0.05
_EPS = 1e-4
_TOP_COS = np.cos(np.radians(30.0))  # a surface facing up within 30 deg counts as the "top" part

# Object classes: shape, size ranges (metres) and an albedo family with its colour ranges, so
# that the class is inferable from both silhouette and texture.  Box size = (width, height,
# depth); sphere = (radius,); cylinder = (radius, height).  hsv = (hue, sat, val) ranges;
# contrast scales the value of the second colour of the pattern.
_OBJECTS = {
    "cabinet": dict(shape="box", size=((0.5, 1.0), (1.2, 2.0), (0.4, 0.6)), tex="stripes_v",
                    freq=(8, 14), hsv=((0.05, 0.12), (0.5, 0.7), (0.3, 0.55)), contrast=(0.6, 0.8)),
    "table": dict(shape="box", size=((0.9, 1.6), (0.4, 0.75), (0.6, 1.0)), tex="checker",
                  freq=(4, 7), hsv=((0.95, 1.05), (0.6, 0.9), (0.55, 0.8)), contrast=(1.0, 1.0), white2=True),
    "bed": dict(shape="box", size=((1.0, 1.6), (0.4, 0.6), (1.8, 2.1)), tex="smooth",
                freq=(2, 5), hsv=((0.55, 0.7), (0.3, 0.6), (0.45, 0.75)), contrast=(0.6, 0.8)),
    "crate": dict(shape="box", size=((0.3, 0.6), (0.3, 0.6), (0.3, 0.6)), tex="stripes_h",
                  freq=(3, 6), hsv=((0.1, 0.15), (0.5, 0.7), (0.5, 0.7)), contrast=(0.4, 0.6)),
    "ball": dict(shape="sphere", size=((0.12, 0.35),), tex="dots",
                 freq=(8, 14), hsv=((0.0, 1.0), (0.7, 1.0), (0.6, 0.9)), contrast=(1.0, 1.0), white2=True),
    "lamp": dict(shape="cylinder", size=((0.08, 0.15), (1.2, 1.8)), tex="stripes_h",
                 freq=(10, 16), hsv=((0.5, 0.65), (0.1, 0.35), (0.55, 0.85)), contrast=(0.3, 0.5)),
    "stool": dict(shape="cylinder", size=((0.2, 0.35), (0.35, 0.55)), tex="checker",
                  freq=(10, 16), hsv=((0.25, 0.4), (0.5, 0.8), (0.4, 0.7)), contrast=(0.4, 0.6)),
}
_ROOM = {
    "wall": dict(tex="smooth", freq=(1, 3), hsv=((0.0, 1.0), (0.05, 0.25), (0.7, 0.9)), contrast=(0.85, 0.95)),
    "floor": dict(tex="planks", freq=(4, 7), hsv=((0.05, 0.1), (0.4, 0.6), (0.35, 0.6)), contrast=(0.7, 0.9)),
    "ceiling": dict(tex="smooth", freq=(1, 2), hsv=((0.0, 1.0), (0.0, 0.05), (0.85, 0.95)), contrast=(0.95, 1.0)),
}
_STACKABLE = ("ball", "crate", "stool")


@dataclass
class Obj:
    cls: str
    shape: str
    pos: np.ndarray  # (x, y_base, z)
    yaw: float
    size: tuple[float, ...]
    tex: dict

    @property
    def radius(self) -> float:  # footprint bounding circle
        return float(np.hypot(self.size[0], self.size[2]) / 2) if self.shape == "box" else self.size[0]

    @property
    def height(self) -> float:
        return 2 * self.size[0] if self.shape == "sphere" else self.size[1]


def _texture_params(rng: np.random.Generator, spec: dict) -> dict:
    hsv = [rng.uniform(*r) for r in spec["hsv"]]
    c1 = np.array(colorsys.hsv_to_rgb(hsv[0] % 1.0, hsv[1], hsv[2]))
    c2 = np.array([0.92, 0.92, 0.9]) if spec.get("white2") else c1 * rng.uniform(*spec["contrast"])
    return dict(kind=spec["tex"], c1=c1, c2=c2, freq=rng.uniform(*spec["freq"]),
                waves=rng.normal(size=(4, 2)) * 2.0, phase=rng.uniform(0, 2 * np.pi, 4))


def _albedo(tex: dict, uv: np.ndarray) -> np.ndarray:
    """Texture families differ in kind (stripes/checker/dots/noise), not only in colour."""
    u, v, f = uv[:, 0], uv[:, 1], tex["freq"]
    noise = np.sin(uv @ (tex["waves"].T * f / 3) + tex["phase"]).mean(1)  # smooth, in [-1, 1]
    kind = tex["kind"]
    if kind == "smooth":
        w = 0.5 + 0.5 * noise
    elif kind in ("stripes_v", "stripes_h"):
        w = (((u if kind == "stripes_v" else v) * f + 0.3 * noise) % 1.0 < 0.5).astype(float)
    elif kind == "checker":
        w = ((np.floor(u * f) + np.floor(v * f)) % 2).astype(float)
    elif kind == "dots":
        w = (np.hypot(u * f % 1.0 - 0.5, v * f % 1.0 - 0.5) < 0.25).astype(float)
    else:  # planks: per-plank brightness from a hash of the plank index, plus grain
        plank = np.floor(u * f)
        w = 0.5 + 0.35 * np.sin(plank * 12.9898 + tex["phase"][0]) + 0.15 * np.sin(v * 40 + 2 * noise)
    w = np.clip(w, 0, 1)[:, None]
    return (1 - w) * tex["c1"] + w * tex["c2"]


def _sample_objects(rng: np.random.Generator, room: np.ndarray, cam: np.ndarray, cam_yaw: float, hfov: float) -> list[Obj]:
    """Rejection-sample non-overlapping objects, mostly inside the view wedge, on the floor or stacked."""
    objs: list[Obj] = []
    names = list(_OBJECTS)
    for _ in range(rng.integers(3, 9)):
        for attempt in range(80):
            # After 40 misses fall back to a small class (ball, crate), which always fits somewhere.
            cls = names[rng.integers(len(names))] if attempt < 40 else _STACKABLE[rng.integers(2)]
            spec = _OBJECTS[cls]
            size = tuple(rng.uniform(*r) for r in spec["size"])
            obj = Obj(cls, spec["shape"], np.zeros(3), rng.uniform(0, np.pi), size, _texture_params(rng, spec))
            if _place(rng, obj, objs, room, cam, cam_yaw, hfov):
                objs.append(obj)
                break
    return objs


def _place(rng, obj: Obj, objs: list[Obj], room, cam, cam_yaw, hfov) -> bool:
    """Pose obj on a box top or in the view wedge; False if it hits the room, camera or others."""
    supports = [o for o in objs if o.shape == "box"]
    if obj.cls in _STACKABLE and supports and rng.random() < 0.3:
        sup = supports[rng.integers(len(supports))]
        slack_x, slack_z = np.array([sup.size[0], sup.size[2]]) / 2 - obj.radius
        if min(slack_x, slack_z) <= 0:
            return False
        off = np.array([rng.uniform(-slack_x, slack_x), 0.0, rng.uniform(-slack_z, slack_z)])
        obj.pos = sup.pos + _rot_y(off[None], sup.yaw)[0] + np.array([0.0, sup.height, 0.0])
    else:
        ang = cam_yaw + rng.uniform(-0.8, 0.8) * hfov / 2
        dist = rng.uniform(1.2, 5.0)
        xz = np.clip(cam[[0, 2]] + dist * np.array([np.sin(ang), np.cos(ang)]),
                     obj.radius + 0.05, room[[0, 2]] - obj.radius - 0.05)
        obj.pos = np.array([xz[0], 0.0, xz[1]])
    if obj.pos[1] + obj.height > room[1] - 0.1 or np.any(room[[0, 2]] < 2 * obj.radius + 0.1):
        return False
    if np.hypot(*(obj.pos - cam)[[0, 2]]) < obj.radius + 0.6:
        return False
    for o in objs:
        apart = np.hypot(*(obj.pos - o.pos)[[0, 2]]) > obj.radius + o.radius + 0.02
        stacked = obj.pos[1] >= o.pos[1] + o.height - 1e-6 or o.pos[1] >= obj.pos[1] + obj.height - 1e-6
        if not (apart or stacked):
            return False
    return True


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product; numpy's reductions over a length-3 axis are several times slower."""
    return a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]


def _rot_y(v: np.ndarray, yaw: float) -> np.ndarray:
    """Rotate row vectors about world y (object-local -> world); use -yaw for the inverse."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * v[:, 0] + s * v[:, 2], v[:, 1], -s * v[:, 0] + c * v[:, 2]], 1)


def _local(obj: Obj, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray origin/direction in the object frame (origin at the centre of its bounding volume)."""
    centre = obj.pos + np.array([0.0, obj.height / 2, 0.0])
    return _rot_y(o - centre, -obj.yaw), _rot_y(d, -obj.yaw)


def intersect(obj: Obj, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Ray parameter of the first hit in front of the origin (inf for a miss); d need not be unit."""
    lo, ld = _local(obj, o, d)
    t = np.full(len(ld), np.inf)
    if obj.shape == "box":
        half = np.array(obj.size) / 2
        inv = 1.0 / np.where(np.abs(ld) < 1e-12, 1e-12, ld)
        t1, t2 = (-half - lo) * inv, (half - lo) * inv
        lo_t, hi_t = np.minimum(t1, t2), np.maximum(t1, t2)
        tn = np.maximum(np.maximum(lo_t[:, 0], lo_t[:, 1]), lo_t[:, 2])
        tf = np.minimum(np.minimum(hi_t[:, 0], hi_t[:, 1]), hi_t[:, 2])
        ok = (tn <= tf) & (tn > _EPS)
        t[ok] = tn[ok]
    elif obj.shape == "sphere":
        a, b = _dot(ld, ld), _dot(lo, ld)
        disc = b * b - a * (_dot(lo, lo) - obj.size[0] ** 2)
        tn = (-b - np.sqrt(np.maximum(disc, 0))) / a
        ok = (disc > 0) & (tn > _EPS)
        t[ok] = tn[ok]
    else:
        r, hh = obj.size[0], obj.size[1] / 2
        a = ld[:, 0] ** 2 + ld[:, 2] ** 2
        b = lo[:, 0] * ld[:, 0] + lo[:, 2] * ld[:, 2]
        disc = b * b - np.maximum(a, 1e-12) * (lo[:, 0] ** 2 + lo[:, 2] ** 2 - r * r)
        ts = (-b - np.sqrt(np.maximum(disc, 0))) / np.maximum(a, 1e-12)
        ok = (disc > 0) & (ts > _EPS) & (np.abs(lo[:, 1] + ts * ld[:, 1]) <= hh)
        t[ok] = ts[ok]
        for cap in (hh, -hh):
            tc = (cap - lo[:, 1]) / np.where(np.abs(ld[:, 1]) < 1e-12, 1e-12, ld[:, 1])
            pc = lo + tc[:, None] * ld
            ok = (tc > _EPS) & (pc[:, 0] ** 2 + pc[:, 2] ** 2 <= r * r) & (tc < t)
            t[ok] = tc[ok]
    return t


def _object_surface(obj: Obj, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World normal, texture coordinates (metres) and part label at hit points p."""
    q = _rot_y(p - obj.pos - np.array([0.0, obj.height / 2, 0.0]), -obj.yaw)
    if obj.shape == "box":
        half = np.array(obj.size) / 2
        axis = np.argmax(np.abs(q) / half, 1)
        n = np.zeros_like(q)
        n[np.arange(len(q)), axis] = np.sign(q[np.arange(len(q)), axis])
        uv = np.where((axis == 0)[:, None], q[:, [2, 1]], np.where((axis == 1)[:, None], q[:, [0, 2]], q[:, [0, 1]]))
    elif obj.shape == "sphere":
        n = q / np.linalg.norm(q, axis=1, keepdims=True)
        uv = obj.size[0] * np.stack([np.arctan2(n[:, 2], n[:, 0]), np.arcsin(np.clip(n[:, 1], -1, 1))], 1)
    else:
        r, hh = obj.size[0], obj.size[1] / 2
        cap = np.abs(q[:, 1]) > hh - 1e-6 * max(1.0, hh)
        cap &= (q[:, 0] ** 2 + q[:, 2] ** 2) < r * r * (1 - 1e-6)
        side = q * np.array([1.0, 0.0, 1.0])
        n = np.where(cap[:, None], np.array([0.0, 1.0, 0.0]) * np.sign(q[:, 1:2]), side / np.linalg.norm(side, axis=1, keepdims=True))
        uv = np.where(cap[:, None], q[:, [0, 2]], np.stack([r * np.arctan2(q[:, 2], q[:, 0]), q[:, 1]], 1))
    frac = q[:, 1] / obj.height + 0.5  # 0 at the base, 1 at the top
    part = np.where(n[:, 1] > _TOP_COS, 1, np.where(frac > 2 / 3, 2, np.where(frac > 1 / 3, 3, 4)))
    return _rot_y(n, obj.yaw), uv, part


def _room_hit(room: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exit distance from the room box and which surface (0 floor, 1 ceiling, 2-5 walls)."""
    safe = np.where(np.abs(d) < 1e-12, 1.0, d)
    tax = np.where(np.abs(d) < 1e-12, np.inf, np.where(d > 0, room - o, -o) / safe)
    axis = np.argmin(tax, 1)
    surf = np.choose(axis, [2 + (d[:, 0] > 0), (d[:, 1] > 0).astype(int), 4 + (d[:, 2] > 0)])
    return np.minimum(np.minimum(tax[:, 0], tax[:, 1]), tax[:, 2]), surf


def _room_surface(p: np.ndarray, surf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    normals = np.array([[0, 1, 0], [0, -1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, 0, -1]], float)
    uv = np.where((surf <= 1)[:, None], p[:, [0, 2]], np.where((surf <= 3)[:, None], p[:, [2, 1]], p[:, [0, 1]]))
    return normals[surf], uv


def _camera(rng: np.random.Generator, room: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Camera near the z=0 wall looking into the room: position, camera-to-world rotation, yaw."""
    cam = np.array([rng.uniform(0.6, room[0] - 0.6), rng.uniform(1.2, 1.6), rng.uniform(0.3, 0.7)])
    yaw, pitch = rng.uniform(-0.35, 0.35), rng.uniform(-0.35, -0.05)
    fwd = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    z = -fwd
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    return cam, np.stack([x, np.cross(z, x), z], 1), yaw


def _edges(sem: np.ndarray, inst: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Boundaries between classes/instances, one pixel wide: at an occlusion (depth jump above
    OCCLUSION_JUMP) the nearer pixel, at a contact or crease the left/top one.  Depth is not a
    separate edge source: every primitive is convex and every room surface is its own
    instance, so each depth discontinuity is already an instance change, whereas a relative
    depth-jump test would add false edges along grazing planes."""
    edge = np.zeros(sem.shape, bool)
    for a, b in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                 ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
        diff = (sem[a] != sem[b]) | (inst[a] != inst[b])
        occlusion = np.abs(depth[a] - depth[b]) > OCCLUSION_JUMP * np.minimum(depth[a], depth[b])
        mark_a = ~occlusion | (depth[a] < depth[b])
        edge[a] |= diff & mark_a
        edge[b] |= diff & ~mark_a
    return edge.astype(np.uint8)


def _shade(rng, albedo, p, n_world, objs, light, height, width) -> np.ndarray:
    """Lambertian point light with shadows + ambient, then auto-exposure, sensor noise, gamma."""
    warm = rng.uniform(0, 1)  # colour temperature: 0 = cool daylight, 1 = warm tungsten
    tint = np.array([1.0 + 0.25 * warm, 1.0, 1.15 - 0.35 * warm])
    to_l = light - p
    dist = np.sqrt(_dot(to_l, to_l))
    cos = np.maximum(_dot(n_world, to_l) / dist, 0)
    lit = np.flatnonzero(cos > 0)  # only these can be shadowed
    o = p[lit] + 1e-3 * n_world[lit]
    for obj in objs:
        cos[lit[intersect(obj, o, light - o) < 1.0]] = 0.0
    direct = cos * 6.0 / (dist ** 2 + 1.0)
    rad = albedo * (rng.uniform(0.15, 0.3) + direct[:, None] * tint)
    rad /= np.percentile(rad, 98) / 0.9
    rad = rad + rng.normal(0, rng.uniform(0.005, 0.02), rad.shape)
    return (255 * np.clip(rad, 0, 1) ** (1 / 2.2) + 0.5).astype(np.uint8).reshape(height, width, 3)


def render_scene(seed: int, height: int, width: int) -> dict[str, np.ndarray]:
    """Render one scene; the output is a pure function of (seed, height, width).

    Besides the labels it returns ``intrinsics`` (fx, fy, cx, cy; pixel (row v, col u) is the
    ray through (u + 0.5, v + 0.5)), the point ``light`` in the camera frame, and
    ``num_objects``, so consumers can check geometry and shading against the labels.
    """
    rng = np.random.default_rng(seed)
    room = np.array([rng.uniform(3, 7), rng.uniform(2.4, 3.2), rng.uniform(3, 7)])
    cam, rot, cam_yaw = _camera(rng, room)
    hfov = np.radians(rng.uniform(60, 70))
    f = width / 2 / np.tan(hfov / 2)
    objs = _sample_objects(rng, room, cam, cam_yaw, hfov)
    room_tex = {k: _texture_params(rng, v) for k, v in _ROOM.items()}

    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d_cam = np.stack([(u - width / 2) / f, -(v - height / 2) / f, -np.ones_like(u)], -1).reshape(-1, 3)
    d = d_cam @ rot.T  # camera z-component is -1, so the ray parameter t *is* the depth
    o = cam[None]
    t_all = np.stack([_room_hit(room, o, d)[0]] + [intersect(ob, o, d) for ob in objs])
    winner = np.argmin(t_all, 0)
    t = t_all[winner, np.arange(len(d))]
    p = o + t[:, None] * d

    n_world, albedo = np.zeros_like(p), np.zeros_like(p)
    sem, inst, part = (np.zeros(len(d), dtype) for dtype in (np.uint8, np.int16, np.uint8))
    m = winner == 0
    _, surf = _room_hit(room, o, d[m])
    n_world[m], uv = _room_surface(p[m], surf)
    for s, name in enumerate(("floor", "ceiling", "wall")):
        sel = (surf == s) if s < 2 else (surf >= 2)
        idx = np.flatnonzero(m)[sel]
        albedo[idx] = _albedo(room_tex[name], uv[sel])
        sem[idx] = CLASS_NAMES.index(name)
    inst[m] = -1 - surf
    for k, ob in enumerate(objs, 1):
        m = winner == k
        n_world[m], uv, part[m] = _object_surface(ob, p[m])
        albedo[m], sem[m], inst[m] = _albedo(ob.tex, uv), CLASS_NAMES.index(ob.cls), k

    # The light hangs just below the ceiling, hence above every object (they stop 0.1 m short).
    light = room * np.array([rng.uniform(0.2, 0.8), 1.0, rng.uniform(0.3, 0.9)]) - [0, rng.uniform(0.03, 0.09), 0]
    image = _shade(rng, albedo, p, n_world, objs, light, height, width)
    depth = t.reshape(height, width).astype(np.float32)
    sem, inst = sem.reshape(height, width), inst.reshape(height, width)
    return {
        "image": image, "semseg": sem, "instance": inst, "depth": depth,
        "normals": (n_world @ rot).reshape(height, width, 3).astype(np.float32),
        "edge": _edges(sem, inst, depth), "sal": (inst > 0).astype(np.uint8),
        "human_parts": part.reshape(height, width),
        "intrinsics": np.array([f, f, width / 2, height / 2], np.float32),
        "light": ((light - cam) @ rot).astype(np.float32),  # point light, camera frame
        "num_objects": np.array(len(objs), np.int16),
    }
