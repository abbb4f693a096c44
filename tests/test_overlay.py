"""The overlay's id tags: on the object's largest piece, apart from each other, on screen; a
palette with no grey. A screenshot of three nearby objects goes to test-artifacts/overlay/."""

import colorsys

import numpy as np
from PIL import Image

from sam2long.runtime.overlay import (OVERLAY_PALETTE, largest_component, object_colour, overlay_masks,
                                      place_tags, text_colour)
from tests.conftest import ROOT, synthetic_frame

ARTIFACTS = ROOT / "test-artifacts" / "overlay"


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _inside(box, shape):
    x, y, w, h = box
    return 0 <= x and 0 <= y and x + w <= shape[1] and y + h <= shape[0]


def _apart(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay


def test_largest_component_ignores_stray_pixels_and_joins_diagonals():
    mask = np.zeros((40, 50), bool)
    mask[0, 0] = mask[39, 49] = True  # strays in two corners
    mask[10:20, 20:30] = True
    mask[20, 30] = mask[21, 31] = True  # a diagonal tail, 8-connected to the block
    mask[5, 5:8] = True  # a small separate piece
    piece = largest_component(mask)
    assert piece.sum() == 102 and piece[21, 31] and not piece[0, 0] and not piece[5, 6]
    # a U shape: its arms join only through the bottom row
    u = np.zeros((10, 10), bool)
    u[0:9, 1] = u[0:9, 7] = True
    u[8, 1:8] = True
    assert (largest_component(u) == u).all()
    assert not largest_component(np.zeros((5, 5), bool)).any()


def test_a_stray_pixel_does_not_send_the_tag_to_the_corner():
    shape = (120, 160)
    mask = _disk(shape, 70, 110, 15)
    mask[0, 0] = True  # one stray pixel far away
    (x, y, w, h), = place_tags({1: mask}, {1: (14, 14)}, shape).values()
    assert 110 - 20 <= x + w / 2 <= 110 + 20 and 70 - 15 - h - 2 <= y <= 70  # just above the disk
    assert (x, y) != (0, 0)


def test_tags_of_nearby_objects_stay_apart_and_on_screen():
    shape = (120, 160)
    # three objects side by side along the top edge, touching: the "above" spot is off screen
    masks = {1: np.zeros(shape, bool), 2: np.zeros(shape, bool), 3: np.zeros(shape, bool)}
    masks[1][0:30, 60:75] = True
    masks[2][0:30, 75:90] = True
    masks[3][0:30, 90:105] = True
    masks[4] = _disk(shape, 115, 155, 8)  # in the bottom-right corner
    boxes = place_tags(masks, {k: (20, 14) for k in masks}, shape)
    assert set(boxes) == {1, 2, 3, 4}
    for box in boxes.values():
        assert _inside(box, shape), box
    for a in boxes:
        for b in boxes:
            assert a == b or _apart(boxes[a], boxes[b]), (a, b, boxes)
    # every tag stays close to its own object
    for k in (1, 2, 3):
        ys, xs = np.nonzero(masks[k])
        x, y, w, h = boxes[k]
        assert abs(x + w / 2 - xs.mean()) < 40 and abs(y + h / 2 - ys.mean()) < 40


def test_the_palette_has_no_grey_and_text_reads_on_every_colour():
    for colour in OVERLAY_PALETTE:
        _, lightness, saturation = colorsys.rgb_to_hls(*(colour / 255.0))
        assert saturation > 0.5 and 0.2 < lightness < 0.85, colour
        ink = np.array(text_colour(colour), float)
        assert np.abs(ink - colour).max() > 100  # black or white, far from the fill
    distinct = {tuple(c) for c in OVERLAY_PALETTE}
    assert len(distinct) == len(OVERLAY_PALETTE)
    assert tuple(object_colour(1 + len(OVERLAY_PALETTE))) == tuple(object_colour(1))  # ids cycle
    assert tuple(object_colour(7)) != (128.0, 128.0, 128.0)  # DAVIS's id 7 is grey


def test_screenshot_three_nearby_objects():
    h, w = 240, 320
    frame = synthetic_frame(0, h, w)
    masks = {1: _disk((h, w), 120, 130, 28), 2: _disk((h, w), 120, 190, 28), 3: _disk((h, w), 168, 160, 26)}
    masks[2] &= ~masks[1]
    masks[3] &= ~(masks[1] | masks[2])
    masks[1][2, 2] = masks[2][235, 315] = True  # strays that used to pull the tags to the corners
    out = overlay_masks(frame, masks)
    assert out.shape == frame.shape and (out != overlay_masks(frame, masks, tags=False)).any()
    # no tag in the corners the strays are in
    plain = overlay_masks(frame, masks, tags=False)
    assert (out[:12, :12] == plain[:12, :12]).all() and (out[-12:, -12:] == plain[-12:, -12:]).all()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.repeat(np.repeat(out, 2, axis=0), 2, axis=1)).save(ARTIFACTS / "three_nearby_objects.png")


def test_demo_frame_is_shown_enlarged_and_clicks_map_back():
    from sam2long.tools.gradio_app import DISPLAY_SIDE, click_to_frame, display_scale, for_display

    frame = synthetic_frame(0, 240, 320)
    shown = for_display(frame)
    assert shown.shape == (540, 720, 3) and max(shown.shape[:2]) == DISPLAY_SIDE
    scale = display_scale((240, 320))
    for x, y in ((70, 120), (0, 0), (319, 239), (250, 60)):
        # the pixel of the shown frame whose centre is over that frame pixel's centre
        index = (round((x + 0.5) * scale - 0.5), round((y + 0.5) * scale - 0.5))
        fx, fy = click_to_frame(index, (240, 320))
        assert abs(fx - x) <= 0.5 / scale + 1e-9 and abs(fy - y) <= 0.5 / scale + 1e-9, (x, y, fx, fy)
    assert click_to_frame((719, 539), (240, 320)) == (319.0, 239.0)  # never off the frame
    big = np.zeros((1080, 1920, 3), np.uint8)
    assert for_display(big) is big and click_to_frame((1000, 500), (1080, 1920)) == (1000.0, 500.0)
