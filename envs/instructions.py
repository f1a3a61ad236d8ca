"""A natural-language instruction for every registered task, CALVIN / LIBERO style.

Usage::

    from vw_robot.envs.instructions import task_instruction, task_for_instruction

    task_instruction("metaworld/pick-place-v3")  # "pick the puck and place it at the goal"
    task_for_instruction("open the drawer")  # "playground/open-drawer"

The task id names a task for the code (``<suite family>/<task>``); the instruction says what to
do in words, as language-conditioned datasets store it (LeRobot's ``task`` strings, CALVIN's
annotations). Meta-World's follow the task descriptions of the Meta-World paper, the
playground's CALVIN's annotations for the same subtasks, the kitchen's the task descriptions of
gymnasium-robotics' FrankaKitchen. Each instruction belongs to one task,
so an instruction maps back to its id. The table is written out here, without importing a
simulator; ``tests/envs/test_instructions.py`` checks it covers ``list_tasks()``.
"""

from __future__ import annotations

import difflib

from vw_robot.errors import UserError

_METAWORLD = {
    "assembly-v3": "pick up the nut and place it onto the peg",
    "basketball-v3": "dunk the basketball into the basket",
    "bin-picking-v3": "pick the puck from one bin and place it into the other bin",
    "box-close-v3": "grasp the lid and close the box with it",
    "button-press-topdown-v3": "press the button from the top",
    "button-press-topdown-wall-v3": "reach over the wall and press the button from the top",
    "button-press-v3": "press the button",
    "button-press-wall-v3": "reach past the wall and press the button",
    "coffee-button-v3": "push the button on the coffee machine",
    "coffee-pull-v3": "pull the mug away from the coffee machine",
    "coffee-push-v3": "push the mug under the coffee machine",
    "dial-turn-v3": "turn the dial",
    "disassemble-v3": "pick the nut off the peg",
    "door-close-v3": "close the door",
    "door-lock-v3": "lock the door by turning the lock",
    "door-open-v3": "open the door",
    "door-unlock-v3": "unlock the door by turning the lock",
    "hand-insert-v3": "insert the gripper into the hole",
    "drawer-close-v3": "push the drawer closed",
    "drawer-open-v3": "pull the drawer open",
    "faucet-open-v3": "turn the faucet on",
    "faucet-close-v3": "turn the faucet off",
    "hammer-v3": "hammer the nail into the wall",
    "handle-press-side-v3": "press the handle down from the side",
    "handle-press-v3": "press the handle down",
    "handle-pull-side-v3": "pull the handle up from the side",
    "handle-pull-v3": "pull the handle up",
    "lever-pull-v3": "pull the lever up",
    "pick-place-wall-v3": "pick the puck, reach over the wall and place it at the goal",
    "pick-out-of-hole-v3": "pick the peg out of the hole",
    "pick-place-v3": "pick the puck and place it at the goal",
    "plate-slide-v3": "slide the plate into the goal",
    "plate-slide-side-v3": "slide the plate sideways into the goal",
    "plate-slide-back-v3": "slide the plate back out of the goal",
    "plate-slide-back-side-v3": "slide the plate sideways back out of the goal",
    "peg-insert-side-v3": "insert the peg sideways into the hole",
    "peg-unplug-side-v3": "unplug the peg sideways",
    "soccer-v3": "kick the ball into the goal",
    "stick-push-v3": "grasp the stick and push the thermos with it",
    "stick-pull-v3": "grasp the stick and pull the thermos with it",
    "push-v3": "push the puck to the goal",
    "push-wall-v3": "push the puck around the wall to the goal",
    "push-back-v3": "pull the puck back to the goal",
    "reach-v3": "reach the goal position",
    "reach-wall-v3": "reach over the wall to the goal position",
    "shelf-place-v3": "pick the puck and place it onto the shelf",
    "sweep-into-v3": "sweep the puck into the hole",
    "sweep-v3": "sweep the puck off the table",
    "window-open-v3": "slide the window open",
    "window-close-v3": "slide the window closed",
}
_ROBOSUITE = {
    "lift": "lift the cube",
    "stack": "stack the red cube on the green cube",
    "pick-place-can": "pick the can and place it in its bin",
    "door": "open the door by turning its handle",
}
_PLAYGROUND = {
    "open-drawer": "open the drawer",
    "close-drawer": "close the drawer",
    "move-slider-left": "push the sliding door to the left",
    "move-slider-right": "push the sliding door to the right",
    "turn-on-lightbulb": "turn on the light bulb",
    "turn-off-lightbulb": "turn off the light bulb",
    "turn-on-led": "turn on the led light",
    "turn-off-led": "turn off the led light",
    "push-red-block-left": "push the red block to the left",
    "push-red-block-right": "push the red block to the right",
    "push-blue-block-left": "push the blue block to the left",
    "push-blue-block-right": "push the blue block to the right",
    "push-pink-block-left": "push the pink block to the left",
    "push-pink-block-right": "push the pink block to the right",
    "lift-red-block": "lift the red block",
    "lift-blue-block": "lift the blue block",
    "lift-pink-block": "lift the pink block",
    "place-in-drawer": "place the block in the drawer",
    "place-in-slider": "place the block in the sliding cabinet",
    "stack-block": "stack the block on top of another block",
    "unstack-block": "take the top block off the stack",
    # Episodes of several subtasks: each subtask's own instruction is the one above.
    "chain": "carry out a chain of five subtasks one after another",
    "play": "play: carry out a sequence of eight subtasks",
}
_KITCHEN = {
    "microwave": "open the microwave door",
    "kettle": "move the kettle to the top left burner",
    "light-switch": "turn on the light switch",
    "slide-cabinet": "open the slide cabinet",
    "hinge-cabinet": "open the hinge cabinet",
    "bottom-burner": "turn the oven knob that activates the bottom burner",
    "top-burner": "turn the oven knob that activates the top burner",
    # The episode's own; info["instruction"] gives the current subtask's at every step.
    "d4rl-4": "open the microwave, move the kettle, turn on the light and open the slide cabinet",
}
# task id -> instruction, for every registered task.
INSTRUCTIONS: dict[str, str] = {
    **{f"metaworld/{name}": text for name, text in _METAWORLD.items()},
    **{f"robosuite/{name}": text for name, text in _ROBOSUITE.items()},
    **{f"playground/{name}": text for name, text in _PLAYGROUND.items()},
    **{f"kitchen/{name}": text for name, text in _KITCHEN.items()},
}
_TASK_OF = {text: task_id for task_id, text in INSTRUCTIONS.items()}


def task_instruction(task_id: str) -> str:
    """The natural-language instruction of a registered task.

    Raises:
        UserError: ``task_id`` is not a registered task; the message names the closest ids.
    """
    try:
        return INSTRUCTIONS[task_id]
    except KeyError:
        close = difflib.get_close_matches(task_id, list(INSTRUCTIONS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"{task_id!r} is not a registered task; no instruction.{hint}") from None


def task_for_instruction(text: str) -> str | None:
    """The task id whose instruction is ``text`` exactly, or None."""
    return _TASK_OF.get(text)
