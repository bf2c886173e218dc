"""Vocabularies of the DSR-Dataset: animals, static objects, motion verbs, scenes, DSR types.

Animals, objects and the core verbs are the official SpatialAlign lists. The scenes are
our own, written in the official style ("In a {place} with {detail} and {detail}"); like
the official set, small indoor objects go with indoor scenes and rocks, stones, stumps
and benches with outdoor ones. No scene mentions an animal or one of the objects, so a
detector prompted with the object's name has a single thing to find.
"""

from __future__ import annotations

ANIMALS: tuple[str, ...] = (
    "bird",
    "cat",
    "dog",
    "duck",
    "fox",
    "hamster",
    "monkey",
    "rabbit",
    "squirrel",
    "turtle",
)

INDOOR_OBJECTS: tuple[str, ...] = (
    "basket",
    "box",
    "chair",
    "crate",
    "cushion",
    "pot",
    "sofa",
    "stool",
)
OUTDOOR_OBJECTS: tuple[str, ...] = ("bench", "rock", "stone", "stump")
OBJECTS: tuple[str, ...] = tuple(sorted(INDOOR_OBJECTS + OUTDOOR_OBJECTS))

# motion verbs each animal plausibly uses (third person singular, as in the prompts)
ANIMAL_VERBS: dict[str, tuple[str, ...]] = {
    "bird": ("hops", "flutters", "flies", "walks", "darts"),
    "cat": ("walks", "paces", "jumps", "darts", "climbs"),
    "dog": ("runs", "trots", "walks", "jumps", "darts"),
    "duck": ("waddles", "walks", "flies", "hops"),
    "fox": ("trots", "runs", "walks", "darts", "jumps"),
    "hamster": ("scampers", "runs", "climbs", "hops"),
    "monkey": ("climbs", "jumps", "scampers", "walks"),
    "rabbit": ("hops", "jumps", "runs", "darts"),
    "squirrel": ("scampers", "jumps", "climbs", "darts", "hops"),
    "turtle": ("walks", "crawls", "paces"),
}
VERBS: tuple[str, ...] = tuple(sorted({v for vs in ANIMAL_VERBS.values() for v in vs}))

INDOOR_SCENES: tuple[str, ...] = (
    "In a cluttered kitchen with copper pans on the wall and morning light on the tiles",
    "In a tidy bedroom with a striped quilt and a lamp glowing on the nightstand",
    "In a bright sunroom with wicker blinds and ferns hanging along the glass",
    "In a dim basement with concrete walls and a single bulb hanging from the ceiling",
    "In a farmhouse kitchen with a long wooden table and herbs drying by the window",
    "In a quiet classroom with rows of desks and a chalkboard on the wall",
    "In a cheerful playroom with a colorful rug and toys scattered on the floor",
    "In a rustic cabin with log walls and a fire crackling in the hearth",
    "In a modern apartment with white walls and a tall plant in the corner",
    "In a dusty garage with tools on a pegboard and an old bicycle against the wall",
    "In a cozy den with a knitted blanket and board games stacked on a shelf",
    "In a long corridor with a polished floor and paintings along the walls",
    "In a small greenhouse with seed trays on shelves and misty glass panes",
    "In a music room with an upright piano and sheet music on a stand",
    "In a laundry room with a humming washing machine and folded towels on a shelf",
    "In a museum hall with marble floors and tall arched windows",
)
OUTDOOR_SCENES: tuple[str, ...] = (
    "On a sandy beach with gentle waves and seashells along the waterline",
    "In an apple orchard with fallen fruit on the grass and a wooden fence nearby",
    "In a snowy field with frosted shrubs and a pale winter sun",
    "In a pine forest with a carpet of needles and shafts of light between the trees",
    "In a backyard garden with tomato plants and a watering can by the path",
    "In a desert canyon with red cliffs and scattered dry brush",
    "On a pond bank with reeds at the water's edge and dragonflies in the air",
    "In a farmyard with a red barn and hay scattered on the ground",
    "In a city park with neat flower beds and a fountain in the distance",
    "On a mountain trail with patches of snow and clouds drifting below the peaks",
    "In a bamboo grove with tall green stalks and dappled shade",
    "In an autumn woodland with orange leaves on the ground and bare branches overhead",
    "In a lavender field with long purple rows and a farmhouse on the hill",
    "On a riverside path with wet grass and water rushing past",
    "In a tropical jungle with broad leaves and vines hanging from the trees",
    "On a windswept moor with blooming heather and a gray overcast sky",
)
SCENES: tuple[str, ...] = INDOOR_SCENES + OUTDOOR_SCENES

# the six DSR types of the paper (initial then final relation) and the opt-in BOTTOM ones
DSR_TYPES: tuple[str, ...] = ("LR", "LT", "RL", "RT", "TL", "TR")
BOTTOM_TYPES: tuple[str, ...] = ("BL", "BR", "BT", "LB", "RB", "TB")


def dsr_types(include_bottom: bool = False) -> tuple[str, ...]:
    """The DSR types to generate: the paper's six, plus the six with BOTTOM on request."""
    return DSR_TYPES + BOTTOM_TYPES if include_bottom else DSR_TYPES
