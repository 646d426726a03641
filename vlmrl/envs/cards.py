"""The gym-cards worlds of RL4VLM (Zhai et al. 2024), re-implemented on gymnasium.

NumberLine, EZPoints, Points24 and Blackjack follow the rules of RL4VLM's `gym_cards`
package (the worlds VL-DAC trains in): the same actions, rewards, terminations and random
deals. What differs is drawing (our own procedural cards and number line, sized so that the
embedded tiny model's 168-pixel, 28-pixel-cell view can tell them apart) and the bookkeeping
every world of `vlmrl.envs` carries: `action_names`, `task_text()`, and `info["success"]`.

All randomness comes from gymnasium's `self.np_random`, so `reset(seed=s)` replays a deal.
Formulas are evaluated by a small total parser over exact fractions (never `eval`).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from PIL import Image, ImageDraw, ImageFont

DEFAULT_SIZE = 168  # the tiny model's pixel budget (vlmrl.model.tiny.IMAGE_SIZE)
FELT = (53, 101, 77)  # card-table green, as in gym_cards
SUIT_COLOURS = {"H": (200, 0, 0), "D": (200, 0, 0), "S": (0, 0, 0), "C": (0, 0, 0)}
SUIT_NAMES = {"H": "hearts", "D": "diamonds", "S": "spades", "C": "clubs"}


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font: no system font needed, same pixels on every machine.
    return ImageFont.load_default(size=size)


def rank_text(rank: int) -> str:
    """The face of a card of rank 1..13: A, 2..9, 10, J, Q, K."""
    return {1: "A", 11: "J", 12: "Q", 13: "K"}.get(rank, str(rank))


def draw_card(rank: str, suit: str, width: int, height: int) -> Image.Image:
    """A face-up card: white, the rank large in the suit's colour, the suit's initial below."""
    card = Image.new("RGB", (width, height), FELT)
    draw = ImageDraw.Draw(card)
    draw.rounded_rectangle([0, 0, width - 1, height - 1], radius=max(2, width // 8), fill="white")
    colour = SUIT_COLOURS[suit]
    size = max(8, int(min(width * 0.75, height * 0.5)))
    draw.text((width / 2, height * 0.42), rank, fill=colour, font=_font(size), anchor="mm")
    draw.text((width / 2, height * 0.82), suit, fill=colour, font=_font(max(6, size // 2)), anchor="mm")
    return card


def draw_card_back(width: int, height: int) -> Image.Image:
    card = Image.new("RGB", (width, height), FELT)
    draw = ImageDraw.Draw(card)
    draw.rounded_rectangle([0, 0, width - 1, height - 1], radius=max(2, width // 8), fill=(30, 60, 160))
    return card


# --------------------------------------------------------------------------- formulas


class FormulaError(ValueError):
    """A formula that does not parse or divides by zero."""


def evaluate_formula(text: str) -> Fraction:
    """Value of an arithmetic formula over + - * / and parentheses, with unary signs.

    Digits written next to each other form one number ("1" then "2" is 12), as when
    gym_cards joins the formula's pieces into one string. Exact fractions, so 8/(3-8/3)
    is 24. Raises `FormulaError` on anything else (the worlds turn it into a -1 reward).
    """
    tokens: list[str] = []
    index = 0
    text = text.replace(" ", "")
    while index < len(text):
        character = text[index]
        if character.isdigit():
            end = index
            while end < len(text) and text[end].isdigit():
                end += 1
            tokens.append(text[index:end])
            index = end
        elif character in "+-*/()":
            tokens.append(character)
            index += 1
        else:
            raise FormulaError(f"unexpected character {character!r}")
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        if position >= len(tokens):
            raise FormulaError("formula ends too early")
        position += 1
        return tokens[position - 1]

    def expression() -> Fraction:
        value = term()
        while peek() in ("+", "-"):
            value = value + term() if take() == "+" else value - term()
        return value

    def term() -> Fraction:
        value = factor()
        while peek() in ("*", "/"):
            operator = take()
            if operator == "*":
                value = value * factor()
            else:
                divisor = factor()
                if divisor == 0:
                    raise FormulaError("division by zero")
                value = value / divisor
        return value

    def factor() -> Fraction:
        token = take()
        if token in ("+", "-"):
            value = factor()
            return value if token == "+" else -value
        if token == "(":
            value = expression()
            if take() != ")":
                raise FormulaError("unbalanced parenthesis")
            return value
        if token.isdigit():
            return Fraction(int(token))
        raise FormulaError(f"unexpected {token!r}")

    if not tokens:
        raise FormulaError("empty formula")
    value = expression()
    if position != len(tokens):
        raise FormulaError(f"unexpected {tokens[position]!r}")
    return value


# --------------------------------------------------------------------------- NumberLine


class NumberLine(gym.Env):
    """Move the current number to the target one step at a time (RL4VLM's NumberLine).

    Actions: 0 "-" (down by one, not below 0), 1 "+" (up by one, not above `max_position`).
    Reward: +1 on reaching the target (the episode ends), -1 for a step that does not bring
    the current number closer, 0 otherwise. Truncated after 2 * max_position steps. Start and
    target are drawn uniformly in 0..max_position and differ. Success: the episode's return is
    positive, i.e. the target was reached without a wasted step (RL4VLM's success rule).

    Drawing: one column per number (six 28-pixel columns at the defaults), the target's
    cell red in the upper row, the current one blue in the lower row, each with its digit.
    """

    metadata = {"render_modes": ["rgb_array"]}
    action_names = ["-", "+"]

    def __init__(self, max_position: int = 5, image_size: int = DEFAULT_SIZE, render_mode: str | None = None):
        if max_position < 1:
            raise ValueError(f"NumberLine max_position must be >= 1, got {max_position}")
        self.max_position = max_position
        self.image_size = image_size
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(2)
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.position = 0
        self.target = 1
        self.steps = 0
        self.total = 0.0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position = int(self.np_random.integers(0, self.max_position + 1))
        # Redraw the target from the other numbers so the two always differ.
        others = [n for n in range(self.max_position + 1) if n != self.position]
        self.target = int(others[int(self.np_random.integers(0, len(others)))])
        self.steps = 0
        self.total = 0.0
        return self.render(), self._info(False)

    def step(self, action: int):
        if not self.action_space.contains(action):
            raise ValueError(f"NumberLine action must be 0 or 1, got {action!r}")
        self.steps += 1
        before = abs(self.position - self.target)
        if action == 0 and self.position > 0:
            self.position -= 1
        elif action == 1 and self.position < self.max_position:
            self.position += 1
        after = abs(self.position - self.target)
        terminated = after == 0
        reward = 1.0 if terminated else (-1.0 if after >= before else 0.0)
        self.total += reward
        truncated = not terminated and self.steps >= 2 * self.max_position
        return self.render(), reward, terminated, truncated, self._info(terminated)

    def _info(self, terminated: bool) -> dict[str, Any]:
        return {
            "target": self.target,
            "current": self.position,
            "success": bool(terminated and self.total > 0),
        }

    def task_text(self) -> str:
        return ""

    def render(self) -> np.ndarray:
        size = self.image_size
        cells = self.max_position + 1
        cell = size / cells
        image = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(image)
        font = _font(max(8, int(cell * 0.7)))
        rows = {"target": (1, (220, 30, 30)), "current": (4, (30, 60, 220))}
        row_height = size / 6
        for name, (row, colour) in rows.items():
            value = self.target if name == "target" else self.position
            top = row * row_height
            for number in range(cells):
                box = [number * cell, top, (number + 1) * cell - 1, top + row_height - 1]
                if number == value:
                    draw.rectangle(box, fill=colour)
                    draw.text(
                        ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2),
                        str(number),
                        fill="white",
                        font=font,
                        anchor="mm",
                    )
        # The line itself: every number in grey between the two rows.
        for number in range(cells):
            draw.text(
                ((number + 0.5) * cell, 2.5 * row_height + row_height / 2),
                str(number),
                fill=(120, 120, 120),
                font=font,
                anchor="mm",
            )
        return np.asarray(image)


# --------------------------------------------------------------------------- EZPoints, Points24


class _PointsGame(gym.Env):
    """Write a formula over the cards' numbers that equals the target, one piece per step.

    A number not among the unused cards is an invalid action: -1 and a blank piece (so the
    formula still grows). "=" evaluates: +10 if the value equals the target and every card
    was used, else -1, and ends the episode. A formula longer than `max_length` pieces ends
    (truncated) with -1 at the next step. Success: the +10 formula.
    """

    metadata = {"render_modes": ["rgb_array"]}
    operators: tuple[str, ...] = ()
    target_points = 0
    card_count = 0
    max_length = 0

    def __init__(self, image_size: int = DEFAULT_SIZE, render_mode: str | None = None):
        self.image_size = image_size
        self.render_mode = render_mode
        self.numbers = list(range(1, 11))
        self.action_names = [str(n) for n in self.numbers] + list(self.operators)
        self.action_space = spaces.Discrete(len(self.action_names))
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.cards: list[tuple[str, str]] = []  # (rank face, suit)
        self.values: list[int] = []
        self.formula: list[str] = []
        self.used: list[int] = []

    def deal(self) -> tuple[list[int], list[tuple[str, str]]]:
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.values, self.cards = self.deal()
        self.formula = []
        self.used = []
        return self.render(), self._info(False)

    def _suit(self) -> str:
        return "HSDC"[int(self.np_random.integers(0, 4))]

    def step(self, action: int):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in 0..{self.action_space.n - 1}, got {action!r}")
        if len(self.formula) > self.max_length:
            return self.render(), -1.0, False, True, self._info(False)
        piece = self.action_names[action]
        if action < len(self.numbers):
            number = self.numbers[action]
            if (self.used + [number]).count(number) > self.values.count(number):
                self.formula.append(" ")
                return self.render(), -1.0, False, False, self._info(False)
            self.used.append(number)
        if piece == "=":
            try:
                correct = evaluate_formula("".join(self.formula)) == self.target_points
            except FormulaError:
                correct = False
            solved = correct and len(self.used) == self.card_count
            return self.render(), 10.0 if solved else -1.0, True, False, self._info(solved)
        self.formula.append(piece)
        return self.render(), 0.0, False, False, self._info(False)

    def _info(self, solved: bool) -> dict[str, Any]:
        return {
            "cards": [f"{suit}{rank}" for rank, suit in self.cards],
            "numbers": list(self.values),
            "formula": list(self.formula),
            "success": bool(solved),
        }

    def task_text(self) -> str:
        return "Formula so far: " + (" ".join(self.formula) if self.formula else "(empty)")

    def render(self) -> np.ndarray:
        size = self.image_size
        image = Image.new("RGB", (size, size), FELT)
        count = len(self.cards)
        width = int(size / max(count, 2) * 0.9)
        height = min(int(width * 7 / 5), int(size * 0.6))
        for index, (rank, suit) in enumerate(self.cards):
            x = int(size * 0.03) + int(index * width * 1.1)
            image.paste(draw_card(rank, suit, width, height), (x, int(size * 0.08)))
        draw = ImageDraw.Draw(image)
        text = "Formula: " + " ".join(self.formula)
        draw.text((4, int(size * 0.78)), text, fill="white", font=_font(max(8, size // 12)))
        return np.asarray(image)


class EZPoints(_PointsGame):
    """Two cards whose numbers make 12 with + or * (RL4VLM's EZPoints). Actions: 1..10, +, *, =.

    Deal: the first card's rank is 2..13 (J, Q, K count 10); the second makes 12 by product
    (half the time, when the first divides 12) or by sum; the two are then shuffled.
    """

    operators = ("+", "*", "=")
    target_points = 12
    card_count = 2
    max_length = 5

    def deal(self) -> tuple[list[int], list[tuple[str, str]]]:
        rank = int(self.np_random.integers(2, 14))
        first = min(rank, 10)
        if first in (1, 2, 3, 4, 6) and self.np_random.random() <= 0.5:
            second = 12 // first
        else:
            second = 12 - first
        values = [first, second]
        cards = [(rank_text(rank), self._suit()), (rank_text(second), self._suit())]
        if self.np_random.random() <= 0.5:
            values.reverse()
            cards.reverse()
        return values, cards


class Points24(_PointsGame):
    """Four cards, make 24 (RL4VLM's Points24, face cards counted as 10).

    Actions: 1..10, +, -, *, /, (, ), =. Ranks 1..13 uniformly; the formula may hold 20 pieces.
    """

    operators = ("+", "-", "*", "/", "(", ")", "=")
    target_points = 24
    card_count = 4
    max_length = 20

    def deal(self) -> tuple[list[int], list[tuple[str, str]]]:
        ranks = [int(r) for r in self.np_random.integers(1, 14, size=4)]
        return [min(r, 10) for r in ranks], [(rank_text(r), self._suit()) for r in ranks]


# --------------------------------------------------------------------------- Blackjack

# 1 = ace, 2..10, and three more 10s for J, Q, K: an infinite deck.
DECK = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10]


def hand_total(values: list[int]) -> int:
    """Sum of a hand, counting one ace as 11 when that does not bust it."""
    total = sum(values)
    return total + 10 if 1 in values and total + 10 <= 21 else total


class Blackjack(gym.Env):
    """Blackjack against a dealer who draws to 17 (gymnasium's Blackjack rules, drawn cards).

    Actions: 0 "stand", 1 "hit". Hit: a card; over 21 loses (-1) and ends. Stand: the dealer
    plays out; +1 win, 0 draw, -1 loss (no natural bonus). The dealer's second card is face
    down until the end. Success: a win (RL4VLM's success rule, return > 0).
    """

    metadata = {"render_modes": ["rgb_array"]}
    action_names = ["stand", "hit"]

    def __init__(self, image_size: int = DEFAULT_SIZE, render_mode: str | None = None):
        self.image_size = image_size
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(2)
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.dealer: list[tuple[int, str, str]] = []
        self.player: list[tuple[int, str, str]] = []

    def _draw(self) -> tuple[int, str, str]:
        value = int(DECK[int(self.np_random.integers(0, len(DECK)))])
        suit = "CDHS"[int(self.np_random.integers(0, 4))]
        face = (
            "A"
            if value == 1
            else (["J", "Q", "K"][int(self.np_random.integers(0, 3))] if value == 10 else str(value))
        )
        return value, face, suit

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.dealer = [self._draw(), self._draw()]
        self.player = [self._draw(), self._draw()]
        return self.render(), self._info(False)

    def step(self, action: int):
        if not self.action_space.contains(action):
            raise ValueError(f"Blackjack action must be 0 or 1, got {action!r}")
        if action == 1:
            self.player.append(self._draw())
            if hand_total([c[0] for c in self.player]) > 21:
                return self.render(), -1.0, True, False, self._info(False)
            return self.render(), 0.0, False, False, self._info(False)
        while hand_total([c[0] for c in self.dealer]) < 17:
            self.dealer.append(self._draw())
        player = hand_total([c[0] for c in self.player])
        dealer = hand_total([c[0] for c in self.dealer])
        dealer = 0 if dealer > 21 else dealer
        reward = float((player > dealer) - (player < dealer))
        return self.render(), reward, True, False, self._info(reward > 0)

    def _info(self, won: bool) -> dict[str, Any]:
        return {
            "player": [f"{suit}{face}" for _, face, suit in self.player],
            "dealer": [f"{suit}{face}" for _, face, suit in self.dealer],
            "player_total": hand_total([c[0] for c in self.player]),
            "success": bool(won),
        }

    def task_text(self) -> str:
        return ""

    def render(self) -> np.ndarray:
        size = self.image_size
        image = Image.new("RGB", (size, size), FELT)
        draw = ImageDraw.Draw(image)
        label = _font(max(8, size // 14))
        width, height = int(size * 0.22), int(size * 0.3)
        draw.text((3, 1), "Dealer", fill="white", font=label)
        _, face, suit = self.dealer[0]
        image.paste(draw_card(face, suit, width, height), (3, int(size * 0.1)))
        image.paste(draw_card_back(width, height), (6 + width, int(size * 0.1)))
        draw.text((3, int(size * 0.47)), "Player", fill="white", font=label)
        for index, (_, face, suit) in enumerate(self.player):
            row, column = divmod(index, 4)
            x = 3 + column * (width + 3)
            y = int(size * 0.56) + row * (height // 3)
            image.paste(draw_card(face, suit, width, height), (x, y))
        return np.asarray(image)
