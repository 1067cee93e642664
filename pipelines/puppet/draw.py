"""The puppet's painter: draws a `Pose` of a character with skia (anti-aliased vector paths).

Knows colours, shapes and the 512x512 design space; knows nothing about time, actions or
conditioning (that is `pose.py`). The background is painted once per character and reused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import skia

from pipelines.conditioning import Appearance, hex_rgb
from pipelines.puppet.pose import Arm, Face, Pose

DESIGN = 512.0
GROUND_Y = 470.0
HIP_Y = 300.0
SEAT_HIP_Y = 372.0
SEAT_Y = 388.0
TORSO = 110.0
NECK = 58.0
UPPER_ARM = 70.0
FOREARM = 64.0
HEAD_W, HEAD_H = 108.0, 122.0
LIMB_W = 26.0


def _color(hex_color: str, alpha: float = 1.0) -> int:
    r, g, b = hex_rgb(hex_color)
    return skia.Color(r, g, b, round(255 * min(max(alpha, 0.0), 1.0)))


def _shade(hex_color: str, factor: float) -> str:
    """Darker (<1) or lighter (>1) version of a colour."""
    rgb = hex_rgb(hex_color)
    if factor <= 1:
        rgb = [round(v * factor) for v in rgb]
    else:
        rgb = [round(v + (255 - v) * (factor - 1)) for v in rgb]
    return "#" + "".join(f"{min(max(v, 0), 255):02x}" for v in rgb)


def _fill(color: int) -> skia.Paint:
    return skia.Paint(AntiAlias=True, Color=color, Style=skia.Paint.kFill_Style)


def _stroke(color: int, width: float) -> skia.Paint:
    return skia.Paint(
        AntiAlias=True,
        Color=color,
        Style=skia.Paint.kStroke_Style,
        StrokeWidth=width,
        StrokeCap=skia.Paint.kRound_Cap,
        StrokeJoin=skia.Paint.kRound_Join,
    )


def _arm_direction(side: float, angle: float) -> tuple[float, float]:
    return side * math.sin(angle), math.cos(angle)


@dataclass
class Painter:
    """Draws one character at one output size; reuse it for every frame of a stream."""

    appearance: Appearance
    width: int
    height: int

    def __post_init__(self) -> None:
        self._surface = skia.Surface(self.width, self.height)
        self._rgba = np.empty((self.height, self.width, 4), np.uint8)
        self._info = skia.ImageInfo.Make(
            self.width, self.height, skia.kRGBA_8888_ColorType, skia.kPremul_AlphaType
        )
        self._scale = min(self.width, self.height) / DESIGN
        self._font = skia.Font(None, 30)
        self._background = self._paint_background()
        a = self.appearance
        self._paints = {
            "skin": _fill(_color(a.skin)),
            "skin_line": _stroke(_color(_shade(a.skin, 0.7)), 2.5),
            "hair": _fill(_color(a.hair)),
            "top": _fill(_color(a.top)),
            "top_shade": _fill(_color(_shade(a.top, 0.8))),
            "bottom": _fill(_color(a.bottom)),
            "shoes": _fill(_color(a.shoes)),
            "accent": _fill(_color(a.accent)),
            "ink": _fill(_color("#2b2024")),
            "white": _fill(_color("#ffffff")),
            "iris": _fill(_color(a.eyes)),
        }

    # -- frame ----------------------------------------------------------------------------

    def render(self, pose: Pose) -> np.ndarray:
        """One RGB frame (height, width, 3) uint8."""
        canvas = self._surface.getCanvas()
        canvas.drawImage(self._background, 0, 0)
        canvas.save()
        canvas.translate(
            (self.width - DESIGN * self._scale) / 2, (self.height - DESIGN * self._scale) / 2
        )
        canvas.scale(self._scale, self._scale)
        self._draw_character(canvas, pose)
        canvas.restore()
        self._surface.readPixels(self._info, self._rgba)
        return self._rgba[..., :3].copy()

    def _paint_background(self) -> skia.Image:
        a = self.appearance
        surface = skia.Surface(self.width, self.height)
        canvas = surface.getCanvas()
        horizon = self.height * 0.78
        sky = skia.GradientShader.MakeLinear(
            [skia.Point(0, 0), skia.Point(0, horizon)],
            [_color(a.background_far), _color(a.background)],
        )
        canvas.drawRect(skia.Rect(0, 0, self.width, horizon), skia.Paint(Shader=sky))
        floor = skia.GradientShader.MakeLinear(
            [skia.Point(0, horizon), skia.Point(0, self.height)],
            [_color(_shade(a.background, 0.82)), _color(_shade(a.background, 0.7))],
        )
        canvas.drawRect(skia.Rect(0, horizon, self.width, self.height), skia.Paint(Shader=floor))
        return surface.makeImageSnapshot()

    # -- body -----------------------------------------------------------------------------

    def _draw_character(self, canvas: skia.Canvas, pose: Pose) -> None:
        lift, sink = min(pose.dy, 0.0), max(pose.dy, 0.0)
        cx = DESIGN / 2 + pose.dx
        hip_y = HIP_Y + (SEAT_HIP_Y - HIP_Y) * pose.sitting + sink + 22.0 * pose.crouch + lift
        feet_y = GROUND_Y + lift

        shadow_w = 70 * (1.0 + lift / 250.0)
        canvas.drawOval(
            skia.Rect(cx - shadow_w, GROUND_Y - 9, cx + shadow_w, GROUND_Y + 9),
            _fill(skia.Color(0, 0, 0, 45)),
        )
        if pose.sitting > 0.01:
            self._draw_stool(canvas, DESIGN / 2, pose.sitting)

        back = pose.facing_back > 0.5
        canvas.save()
        squash = max(0.22, abs(math.cos(math.pi * pose.facing_back)))
        canvas.translate(cx, 0)
        canvas.scale(squash, 1.0)
        canvas.translate(-cx, 0)

        self._draw_legs(canvas, cx + 10.0 * pose.hip_sway, hip_y, feet_y, pose)
        canvas.save()
        canvas.rotate(math.degrees(pose.lean), cx, hip_y)
        torso_len = TORSO * (1.0 - 0.32 * pose.bow) * (1.0 + 0.012 * pose.breathe)
        shoulder_y = hip_y - torso_len - 10.0 * pose.shrug
        body_cx = cx + 10.0 * pose.hip_sway
        self._draw_torso(canvas, body_cx, hip_y, shoulder_y + 10.0 * pose.shrug, back)
        head_cy = shoulder_y + 10.0 * pose.shrug - NECK + 40.0 * pose.bow + 4.0 * pose.head_pitch
        canvas.drawRect(
            skia.Rect(body_cx - 11, head_cy + 40, body_cx + 11, shoulder_y + 16),
            self._paints["skin"],
        )
        arms_behind_head = back
        if arms_behind_head:
            self._draw_arms(canvas, body_cx, shoulder_y, pose, back)
        self._draw_head(canvas, body_cx, head_cy, pose, back)
        if not arms_behind_head:
            self._draw_arms(canvas, body_cx, shoulder_y, pose, back)
        canvas.restore()
        canvas.restore()

    def _draw_stool(self, canvas: skia.Canvas, cx: float, alpha: float) -> None:
        wood = _fill(_color("#8a5a3b", alpha))
        dark = _stroke(_color("#6b432b", alpha), 9)
        for x in (-42, 42):
            canvas.drawLine(cx + x, SEAT_Y + 8, cx + x * 1.15, GROUND_Y, dark)
        canvas.drawRoundRect(skia.Rect(cx - 62, SEAT_Y, cx + 62, SEAT_Y + 14), 6, 6, wood)

    def _draw_legs(
        self, canvas: skia.Canvas, cx: float, hip_y: float, feet_y: float, pose: Pose
    ) -> None:
        s = pose.sitting
        leg = _stroke(_color(self.appearance.bottom), LIMB_W + 4)
        for side in (-1.0, 1.0):
            hip = (cx + side * 22, hip_y)
            stand_knee = (cx + side * (24 + 16 * pose.crouch), (hip_y + feet_y) / 2)
            sit_knee = (cx + side * 34, hip_y + 14)
            knee = (
                stand_knee[0] + (sit_knee[0] - stand_knee[0]) * s,
                stand_knee[1] + (sit_knee[1] - stand_knee[1]) * s,
            )
            foot = (cx + side * (26 + 8 * s), feet_y - 8)
            path = skia.Path()
            path.moveTo(*hip)
            path.lineTo(*knee)
            path.lineTo(*foot)
            canvas.drawPath(path, leg)
            canvas.drawOval(
                skia.Rect(
                    foot[0] - 18 + side * 6, foot[1] - 4, foot[0] + 18 + side * 6, foot[1] + 16
                ),
                self._paints["shoes"],
            )

    def _draw_torso(
        self, canvas: skia.Canvas, cx: float, hip_y: float, shoulder_y: float, back: bool
    ) -> None:
        pelvis = skia.Rect(cx - 44, hip_y - 18, cx + 44, hip_y + 20)
        canvas.drawRoundRect(pelvis, 16, 16, self._paints["bottom"])
        path = skia.Path()
        path.moveTo(cx - 50, shoulder_y + 6)
        path.quadTo(cx, shoulder_y - 8, cx + 50, shoulder_y + 6)
        path.quadTo(cx + 54, shoulder_y + 40, cx + 44, hip_y - 4)
        path.quadTo(cx, hip_y + 8, cx - 44, hip_y - 4)
        path.quadTo(cx - 54, shoulder_y + 40, cx - 50, shoulder_y + 6)
        canvas.drawPath(path, self._paints["top"])
        if not back:
            collar = skia.Path()
            collar.moveTo(cx - 18, shoulder_y - 1)
            collar.lineTo(cx, shoulder_y + 18)
            collar.lineTo(cx + 18, shoulder_y - 1)
            canvas.drawPath(collar, _stroke(_color(self.appearance.accent), 6))
            canvas.drawCircle(cx, shoulder_y + 48, 5, self._paints["accent"])
            canvas.drawCircle(cx, shoulder_y + 72, 5, self._paints["accent"])
        canvas.drawRect(
            skia.Rect(cx - 45, hip_y - 14, cx + 45, hip_y - 6), self._paints["top_shade"]
        )

    def _draw_arms(
        self, canvas: skia.Canvas, cx: float, shoulder_y: float, pose: Pose, back: bool
    ) -> None:
        sleeve = _stroke(_color(self.appearance.top), LIMB_W)
        skin = _stroke(_color(self.appearance.skin), LIMB_W - 6)
        flip = -1.0 if back else 1.0
        for side, arm in ((-1.0 * flip, pose.arm_left), (1.0 * flip, pose.arm_right)):
            shoulder = (cx + side * 46, shoulder_y + 12)
            ux, uy = _arm_direction(side, arm.upper)
            elbow = (shoulder[0] + ux * UPPER_ARM, shoulder[1] + uy * UPPER_ARM)
            fx, fy = _arm_direction(side, arm.upper + arm.fore)
            wrist = (elbow[0] + fx * FOREARM, elbow[1] + fy * FOREARM)
            canvas.drawLine(*elbow, *wrist, skin)
            canvas.drawLine(*shoulder, *elbow, sleeve)
            self._draw_hand(canvas, wrist, (fx, fy), side, arm)

    def _draw_hand(
        self,
        canvas: skia.Canvas,
        at: tuple[float, float],
        direction: tuple[float, float],
        side: float,
        arm: Arm,
    ) -> None:
        x, y = at
        skin, line = self._paints["skin"], self._paints["skin_line"]
        if arm.hand == "thumb":
            canvas.drawRoundRect(skia.Rect(x - 5, y - 30, x + 5, y - 6), 5, 5, skin)
            canvas.drawRoundRect(skia.Rect(x - 5, y - 30, x + 5, y - 6), 5, 5, line)
        elif arm.hand == "point":
            tip = (x + direction[0] * 26, y + direction[1] * 26)
            canvas.drawLine(x, y, *tip, _stroke(_color(self.appearance.skin), 8))
        radius = 11.0 if arm.hand in ("fist", "thumb", "point") else 13.0
        canvas.drawCircle(x, y, radius, skin)
        canvas.drawCircle(x, y, radius, line)

    # -- head and face -----------------------------------------------------------------------

    def _draw_head(self, canvas: skia.Canvas, cx: float, cy: float, pose: Pose, back: bool) -> None:
        canvas.save()
        canvas.rotate(math.degrees(pose.head_tilt), cx, cy + 50)
        head = skia.Rect(cx - HEAD_W / 2, cy - HEAD_H / 2, cx + HEAD_W / 2, cy + HEAD_H / 2)
        yaw = 0.0 if back else pose.head_yaw
        self._draw_hair(canvas, cx, cy, yaw, layer="back")
        for side in (-1.0, 1.0):
            ear_x = cx + side * (HEAD_W / 2 - 2) - yaw * 6
            canvas.drawOval(skia.Rect(ear_x - 9, cy - 2, ear_x + 9, cy + 22), self._paints["skin"])
        canvas.drawOval(head, self._paints["skin"])
        if back:
            canvas.drawOval(head.makeInset(-2, -2), self._paints["hair"])
        else:
            self._draw_face(canvas, cx + yaw * 18, cy + pose.head_pitch * 9, pose.face, pose)
            self._draw_hair(canvas, cx, cy, yaw, layer="front")
        canvas.restore()
        self._draw_props(canvas, cx, cy, pose.face)

    def _draw_hair(self, canvas: skia.Canvas, cx: float, cy: float, yaw: float, layer: str) -> None:
        style, hair = self.appearance.hair_style, self._paints["hair"]
        top = cy - HEAD_H / 2
        if style == "bald":
            return
        if layer == "back":
            if style == "long":
                canvas.drawRoundRect(skia.Rect(cx - 64, top + 4, cx + 64, cy + 110), 40, 40, hair)
            elif style == "bob":
                canvas.drawRoundRect(skia.Rect(cx - 66, top, cx + 66, cy + 46), 38, 38, hair)
            elif style == "ponytail":
                canvas.drawOval(
                    skia.Rect(cx + 38 - yaw * 20, top + 10, cx + 82 - yaw * 20, cy + 70), hair
                )
            elif style == "bun":
                canvas.drawCircle(cx - yaw * 10, top - 14, 26, hair)
            elif style == "curly":
                for i in range(9):
                    a = math.pi * (0.9 + 1.2 * i / 8)
                    canvas.drawCircle(
                        cx + 62 * math.cos(a), cy - 8 + 64 * math.sin(a) * 0.9, 22, hair
                    )
            return
        shift = -yaw * 10
        cap = skia.Path()
        cap.moveTo(cx - HEAD_W / 2 - 4, cy + 4)
        cap.cubicTo(cx - 62, top - 30, cx + 62, top - 30, cx + HEAD_W / 2 + 4, cy + 4)
        fringe_y = top + 34
        if style == "spiky":
            for i in range(7):
                x0 = cx - 54 + i * 18 + shift
                cap.lineTo(x0 + 9, fringe_y - 6 if i % 2 else fringe_y + 6)
            cap.close()
            canvas.drawPath(cap, hair)
            for i in range(5):
                x0 = cx - 44 + i * 22 + shift
                spike = skia.Path()
                spike.moveTo(x0 - 12, top + 8)
                spike.lineTo(x0, top - 26)
                spike.lineTo(x0 + 12, top + 8)
                canvas.drawPath(spike, hair)
            return
        cap.quadTo(cx + 30 + shift, fringe_y + 10, cx + 8 + shift, fringe_y - 6)
        cap.quadTo(cx - 20 + shift, fringe_y + 14, cx - HEAD_W / 2 - 4, cy + 4)
        canvas.drawPath(cap, hair)
        if style == "curly":
            for i in range(6):
                canvas.drawCircle(cx - 50 + i * 20 + shift, top + 12, 14, hair)

    def _draw_face(self, canvas: skia.Canvas, cx: float, cy: float, face: Face, pose: Pose) -> None:
        ink, white = self._paints["ink"], self._paints["white"]
        eye_y = cy + 4
        for side, openness, raise_ in (
            (-1.0, face.eye_open_left, face.brow_raise_left),
            (1.0, face.eye_open_right, face.brow_raise_right),
        ):
            ex = cx + side * 23
            rx, ry = 11.0 * face.eye_scale, 14.0 * face.eye_scale * openness
            if face.eye_smile > 0.5:
                arc = skia.Path()
                arc.moveTo(ex - 11, eye_y + 3)
                arc.quadTo(ex, eye_y - 12, ex + 11, eye_y + 3)
                canvas.drawPath(arc, _stroke(_color("#2b2024"), 4))
            elif ry < 2.0:
                lid = skia.Path()
                lid.moveTo(ex - 11, eye_y)
                lid.quadTo(ex, eye_y + 6, ex + 11, eye_y)
                canvas.drawPath(lid, _stroke(_color("#2b2024"), 4))
            else:
                canvas.drawOval(skia.Rect(ex - rx, eye_y - ry, ex + rx, eye_y + ry), white)
                px = ex + face.pupil_dx * 4.5
                py = eye_y + face.pupil_dy * min(5.0, ry * 0.45)
                r = min(8.0 * face.pupil_scale * face.eye_scale, ry)
                canvas.drawCircle(px, py, r, self._paints["iris"])
                canvas.drawCircle(px, py, r * 0.5, ink)
                canvas.drawCircle(px + r * 0.35, py - r * 0.4, max(r * 0.28, 1.2), white)
                canvas.drawOval(
                    skia.Rect(ex - rx, eye_y - ry, ex + rx, eye_y + ry),
                    _stroke(_color("#2b2024"), 2.5),
                )
            brow_y = eye_y - 24 - 7 * raise_
            inner, outer = brow_y - 5 * face.brow_tilt, brow_y + 2 * face.brow_tilt
            canvas.drawLine(
                ex - side * 11,
                inner,
                ex + side * 12,
                outer,
                _stroke(_color(_shade(self.appearance.hair, 0.8)), 5),
            )
            if face.blush > 0.01:
                canvas.drawOval(
                    skia.Rect(ex + side * 6 - 11, eye_y + 16, ex + side * 6 + 11, eye_y + 26),
                    _fill(_color("#ff6f7d", 0.55 * face.blush)),
                )
            if face.tear > 0.01 and side < 0:
                canvas.drawCircle(
                    ex - 8,
                    eye_y + 20 + 6 * math.sin(pose.breathe),
                    5,
                    _fill(_color("#5fb4ff", 0.9 * face.tear)),
                )
        self._draw_mouth(canvas, cx, cy + 34, face)
        if face.sweat > 0.01:
            drop = skia.Path()
            drop.moveTo(cx + 44, cy - 38)
            drop.quadTo(cx + 36, cy - 22, cx + 44, cy - 18)
            drop.quadTo(cx + 52, cy - 22, cx + 44, cy - 38)
            canvas.drawPath(drop, _fill(_color("#7cc6ff", face.sweat)))
        if face.anger_mark > 0.01:
            mark = _stroke(_color("#e0303a", face.anger_mark), 4)
            for dx, dy in ((-6, 0), (6, 0), (0, -6), (0, 6)):
                canvas.drawLine(cx + 36, cy - 40, cx + 36 + dx, cy - 40 + dy, mark)

    def _draw_mouth(self, canvas: skia.Canvas, cx: float, my: float, face: Face) -> None:
        half = 14.0 * face.mouth_width
        curve = 12.0 * face.mouth_smile
        opening = 20.0 * face.mouth_open
        lip = _stroke(_color("#7a2e35"), 3.5)
        upper = skia.Path()
        upper.moveTo(cx - half, my - curve * 0.3)
        if face.mouth_wobble > 0.5 and opening < 6:
            for i in range(1, 5):
                upper.lineTo(cx - half + i * half / 2, my + (3 if i % 2 else -3))
            canvas.drawPath(upper, lip)
            return
        upper.quadTo(cx, my + curve - opening * 0.2, cx + half, my - curve * 0.3)
        if opening < 2.0:
            canvas.drawPath(upper, lip)
            return
        upper.quadTo(cx, my + curve + opening * 1.4, cx - half, my - curve * 0.3)
        upper.close()
        canvas.drawPath(upper, _fill(_color("#5a1f28")))
        canvas.drawCircle(
            cx,
            my + curve * 0.6 + opening * 0.55,
            min(half * 0.45, opening * 0.45),
            _fill(_color("#e0707c")),
        )
        canvas.drawPath(upper, lip)

    def _draw_props(self, canvas: skia.Canvas, cx: float, cy: float, face: Face) -> None:
        def text(s: str, x: float, y: float, alpha: float, color: str = "#2b2024") -> None:
            canvas.drawString(s, x, y, self._font, _fill(_color(color, alpha)))

        if face.zzz > 0.01:
            for i, z in enumerate("Zz"):
                text(z, cx + 64 + 18 * i, cy - 60 - 22 * i, face.zzz, "#5566aa")
        if face.question > 0.01:
            text("?", cx + 66, cy - 58, face.question, "#d9822b")
        if face.exclaim > 0.01:
            text("!", cx + 68, cy - 58, face.exclaim, "#e0303a")
        if face.thought > 0.01:
            cloud = _fill(_color("#ffffff", 0.9 * face.thought))
            edge = _stroke(_color("#9aa3b5", face.thought), 2)
            for r, dx, dy in ((6, 62, -52), (10, 80, -76), (24, 112, -112)):
                canvas.drawCircle(cx + dx, cy + dy, r, cloud)
                canvas.drawCircle(cx + dx, cy + dy, r, edge)
            text("...", cx + 96, cy - 108, face.thought, "#5566aa")
