"""A fixed list of text-only questions with exact answers: the `text-kept` task's documents.

They check that a VLM built on a pretrained language model (`smol`: SmolLM2-135M-Instruct)
kept the language model's text skills through vision training: small arithmetic, comparisons
of two numbers, counts everyone knows (days in a week, legs of a spider) and one-word facts
(capitals, colours of common things). Every question ends with `ANSWER_INSTRUCTION` so a small
instruction-tuned model answers briefly.

The list is written out, not sampled: the same ids and texts on every machine and in every
version, so a recipe can store the ids a base model gets right and ask the same questions after
training. Numeric answers are written in digits; word answers are a word or two in lower case.
Apart from the comparisons, no answer appears in its own question, so a model that echoes the
question is not scored right; comparisons alternate which side holds the answer, so echoing or
always picking one side is right on half of them at most.
"""

from __future__ import annotations

from dataclasses import dataclass

ANSWER_INSTRUCTION = "Answer with just the answer."


@dataclass(frozen=True)
class TextQuestion:
    id: str
    question: str  # ends with ANSWER_INSTRUCTION
    answer: str
    question_type: str  # "arithmetic", "comparison", "count" or "fact"


def _ask(identifier: str, question: str, answer: object, question_type: str) -> TextQuestion:
    return TextQuestion(identifier, f"{question} {ANSWER_INSTRUCTION}", str(answer), question_type)


# Operand pairs are chosen so no answer equals the question's last operand (8 - 4 would let an
# echo of the question pass under the last-number rule of `text-kept`).
ADDITIONS = (
    (2, 3), (4, 5), (7, 5), (6, 8), (9, 4), (3, 3), (8, 8), (1, 6), (5, 9), (7, 2), (6, 6), (9, 9),
    (12, 7), (15, 14), (23, 11), (30, 25), (18, 6), (40, 20), (33, 33), (27, 12), (11, 19), (50, 45),
)  # fmt: skip
SUBTRACTIONS = (
    (9, 4), (8, 3), (7, 5), (10, 6), (15, 7), (20, 8), (13, 9), (25, 5), (30, 12), (44, 21),
    (18, 11), (60, 35), (17, 9), (100, 40),
)  # fmt: skip
PRODUCTS = (
    (2, 3), (3, 4), (5, 5), (6, 7), (8, 9), (4, 6), (7, 7), (9, 3), (2, 8), (10, 5), (6, 6),
    (12, 2), (3, 8), (4, 4),
)  # fmt: skip
COMPARISONS = (
    (17, 23), (45, 54), (8, 3), (99, 100), (12, 21), (64, 46), (7, 70), (31, 13), (250, 205),
    (88, 98), (5, 15), (42, 24), (301, 310), (19, 91), (66, 67), (14, 41), (120, 102), (9, 11),
    (73, 37), (500, 50),
)  # fmt: skip

COUNTS = (
    ("week-days", "How many days are in a week?", 7),
    ("year-months", "How many months are in a year?", 12),
    ("day-hours", "How many hours are in a day?", 24),
    ("hour-minutes", "How many minutes are in an hour?", 60),
    ("minute-seconds", "How many seconds are in a minute?", 60),
    ("year-days", "How many days are in a year that is not a leap year?", 365),
    ("spider-legs", "How many legs does a spider have?", 8),
    ("insect-legs", "How many legs does an insect have?", 6),
    ("dog-legs", "How many legs does a dog have?", 4),
    ("bird-legs", "How many legs does a bird have?", 2),
    ("triangle-sides", "How many sides does a triangle have?", 3),
    ("square-sides", "How many sides does a square have?", 4),
    ("hexagon-sides", "How many sides does a hexagon have?", 6),
    ("octagon-sides", "How many sides does an octagon have?", 8),
    ("bicycle-wheels", "How many wheels does a bicycle have?", 2),
    ("tricycle-wheels", "How many wheels does a tricycle have?", 3),
    ("continents", "How many continents are there on Earth?", 7),
    ("alphabet-letters", "How many letters are in the English alphabet?", 26),
    ("dollar-cents", "How many cents are in a dollar?", 100),
    ("metre-centimetres", "How many centimetres are in a metre?", 100),
    ("kilogram-grams", "How many grams are in a kilogram?", 1000),
    ("hand-fingers", "How many fingers are on one human hand, counting the thumb?", 5),
    ("planets", "How many planets are in our solar system?", 8),
    ("soccer-players", "How many players does a soccer team have on the field?", 11),
    ("guitar-strings", "How many strings does a standard guitar have?", 6),
    ("water-boiling", "At how many degrees Celsius does water boil at sea level?", 100),
    ("dozen", "How many things are in a dozen?", 12),
)

CAPITALS = (
    ("france", "France", "paris"),
    ("germany", "Germany", "berlin"),
    ("italy", "Italy", "rome"),
    ("spain", "Spain", "madrid"),
    ("japan", "Japan", "tokyo"),
    ("china", "China", "beijing"),
    ("russia", "Russia", "moscow"),
    ("united-kingdom", "the United Kingdom", "london"),
    ("united-states", "the United States", "washington"),
    ("egypt", "Egypt", "cairo"),
    ("greece", "Greece", "athens"),
    ("canada", "Canada", "ottawa"),
    ("australia", "Australia", "canberra"),
    ("portugal", "Portugal", "lisbon"),
    ("ireland", "Ireland", "dublin"),
    ("norway", "Norway", "oslo"),
    ("sweden", "Sweden", "stockholm"),
    ("austria", "Austria", "vienna"),
    ("poland", "Poland", "warsaw"),
    ("turkey", "Turkey", "ankara"),
    ("kenya", "Kenya", "nairobi"),
    ("thailand", "Thailand", "bangkok"),
    ("south-korea", "South Korea", "seoul"),
    ("cuba", "Cuba", "havana"),
    ("peru", "Peru", "lima"),
    ("netherlands", "the Netherlands", "amsterdam"),
)

COLOURS = (
    ("sky", "What colour is the sky on a clear day?", "blue"),
    ("grass", "What colour is grass?", "green"),
    ("snow", "What colour is snow?", "white"),
    ("banana", "What colour is a ripe banana?", "yellow"),
    ("blood", "What colour is blood?", "red"),
    ("coal", "What colour is coal?", "black"),
    ("milk", "What colour is milk?", "white"),
    ("lemon", "What colour is a lemon?", "yellow"),
    ("strawberry", "What colour is a ripe strawberry?", "red"),
    ("crow", "What colour is a crow?", "black"),
    ("chocolate", "What colour is milk chocolate?", "brown"),
    ("leaves", "What colour are most leaves in summer?", "green"),
    ("fire-truck", "What colour is a fire truck?", "red"),
)

FACTS = (
    ("opposite-hot", "What is the opposite of hot?", "cold"),
    ("opposite-up", "What is the opposite of up?", "down"),
    ("opposite-day", "What is the opposite of day?", "night"),
    ("opposite-big", "What is the opposite of big?", "small"),
    ("opposite-open", "What is the opposite of open?", "closed"),
    ("frozen-water", "What is frozen water called?", "ice"),
    ("bees-make", "What sweet food do bees make?", "honey"),
    ("moo", "Which farm animal says moo?", "cow"),
    ("barks", "Which pet animal barks?", "dog"),
    ("largest-planet", "What is the largest planet in our solar system?", "jupiter"),
    ("red-planet", "Which planet is known as the Red Planet?", "mars"),
    ("nearest-star", "What is the star at the centre of our solar system called?", "sun"),
    ("breathe-gas", "Which gas do humans need to breathe to stay alive?", "oxygen"),
    ("largest-ocean", "What is the largest ocean on Earth?", "pacific"),
    ("after-monday", "Which day of the week comes after Monday?", "tuesday"),
    ("after-january", "Which month comes after January?", "february"),
    ("after-winter", "Which season comes after winter?", "spring"),
    ("king-of-jungle", "Which animal is called the king of the jungle?", "lion"),
    ("baby-cat", "What is a baby cat called?", "kitten"),
    ("baby-dog", "What is a baby dog called?", "puppy"),
    ("plural-mouse", "What is the plural of mouse?", "mice"),
    ("language-france", "Which language is spoken in France?", "french"),
    ("language-germany", "Which language is spoken in Germany?", "german"),
    ("language-spain", "Which language is spoken in Spain?", "spanish"),
    ("tallest-animal", "What is the tallest animal in the world?", "giraffe"),
    ("three-sides-shape", "What shape has three sides?", "triangle"),
    ("pumps-blood", "Which organ pumps blood around the body?", "heart"),
    ("liquid-metal", "Which metal is a liquid at room temperature?", "mercury"),
)


def _questions() -> tuple[TextQuestion, ...]:
    questions = [_ask(f"add-{a}-{b}", f"What is {a} + {b}?", a + b, "arithmetic") for a, b in ADDITIONS]
    questions += [_ask(f"sub-{a}-{b}", f"What is {a} - {b}?", a - b, "arithmetic") for a, b in SUBTRACTIONS]
    questions += [_ask(f"mul-{a}-{b}", f"What is {a} times {b}?", a * b, "arithmetic") for a, b in PRODUCTS]
    for index, (first, second) in enumerate(COMPARISONS):
        word, pick = ("larger", max) if index % 2 == 0 else ("smaller", min)
        questions.append(
            _ask(
                f"{word}-{first}-{second}",
                f"Which is {word}, {first} or {second}?",
                pick(first, second),
                "comparison",
            )
        )
    questions += [_ask(f"count-{key}", question, answer, "count") for key, question, answer in COUNTS]
    questions += [
        _ask(f"capital-{key}", f"What is the capital of {country}?", city, "fact")
        for key, country, city in CAPITALS
    ]
    questions += [_ask(f"colour-{key}", question, answer, "fact") for key, question, answer in COLOURS]
    questions += [_ask(f"fact-{key}", question, answer, "fact") for key, question, answer in FACTS]
    return tuple(questions)


TEXT_QUESTIONS: tuple[TextQuestion, ...] = _questions()
