"""The command line shared by reference_runner.py and engine_runner.py, so that the
benchmark can drive both sides with the same arguments. No project imports: the
reference runner runs with the original implementation first on the path."""

import argparse


def runner_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True, help="model YAML (SAM 2.1 layout)")
    p.add_argument("--checkpoint", required=True, help='{"model": state_dict} .pt')
    p.add_argument("--frames", required=True, help="folder of <index>.jpg frames")
    p.add_argument("--prompts", required=True, help="npz with mask_<id> and frame_<id>")
    p.add_argument("--num_pathway", type=int, default=3)
    p.add_argument("--iou_thre", type=float, default=0.1)
    p.add_argument("--uncertainty", type=float, default=2)
    p.add_argument("--out", required=True, help="npz to write (the fixture's keys)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    return p
