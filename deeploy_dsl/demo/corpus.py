"""A seeded stochastic grammar of very simple children's stories: the demo model's training text.

Every story has a beginning (who, where, what they love), a problem (something lost, stuck, broken,
scary or wanted), a short dialogue in quotes, a resolution and an ending. The slots (names, animals,
places, objects, colours, feelings, foods, activities) multiply into far more stories than a
260K-parameter model can memorise, so it has to learn the structure: agreement of pronouns, a name
that is introduced and then reused, a lost object that is found again. Standard library only and
deterministic for a seed: `generate(seed, n)` is the same list on every machine.

    python -m deeploy_dsl.demo.corpus --seed 1 --stories 5
"""
from __future__ import annotations

import argparse
import random
import re
from typing import Iterator

GIRLS = ["Lily", "Mia", "Sue", "Anna", "Emma", "Lucy", "Zoe", "Amy", "Kim", "Rose", "Ella", "Jane"]
BOYS = ["Tom", "Ben", "Max", "Sam", "Tim", "Leo", "Jack", "Bob", "Dan", "Joe", "Jake", "Finn"]
ANIMALS = ["cat", "dog", "bird", "bunny", "frog", "fox", "bear", "duck", "mouse", "pig", "owl", "fish"]
KIDS = ["girl", "boy"]
SIZES = ["little", "big", "small", "tiny"]
TRAITS = ["happy", "kind", "brave", "shy", "funny", "curious", "good", "silly"]
COLOURS = ["red", "blue", "green", "yellow", "pink", "purple", "orange", "white"]
OBJECTS = ["ball", "hat", "kite", "toy car", "doll", "book", "box", "cup", "drum", "teddy bear", "bag", "shoe"]
PLACES = ["park", "garden", "forest", "house", "farm", "beach", "town", "field", "school", "pond"]
HIDES = ["under a tree", "behind a rock", "in the grass", "under the bed", "near the pond",
         "in a big box", "on top of a hill", "behind the door", "in the sand", "under a leaf"]
HIGH = ["a tall tree", "the roof", "a high shelf", "a big wall"]
FOODS = ["apple", "cake", "cookie", "sandwich", "banana", "pie", "candy", "carrot"]
ACTIVITIES = ["play with a ball", "run and jump", "sing songs", "read books", "draw pictures",
              "dance", "look at the sky", "pick flowers", "swim", "climb trees", "play games", "build things"]
SAD = ["sad", "upset", "scared", "worried"]
GLAD = ["happy", "glad", "proud", "excited"]
WEATHER = ["sunny", "warm", "bright", "windy", "cold", "rainy"]
HELPERS = ["mom", "dad", "grandma", "grandpa", "teacher"]
SOUNDS = {"cat": "meow", "dog": "woof", "bird": "tweet", "duck": "quack", "frog": "ribbit", "owl": "hoot",
          "pig": "oink", "mouse": "squeak", "bear": "grr", "fox": "yip", "bunny": "hop", "fish": "blub"}


class Char:
    """A character: how the story names it the first time and after, and its pronouns."""

    def __init__(self, name: str, kind: str, girl: bool):
        self.name, self.kind = name, kind
        self.he, self.his, self.him = ("she", "her", "her") if girl else ("he", "his", "him")

    @property
    def He(self) -> str:
        return self.he.capitalize()

    @property
    def His(self) -> str:
        return self.his.capitalize()


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


class Story:
    """One story drawn from the grammar; `text()` is a single paragraph of sentences."""

    def __init__(self, rng: random.Random):
        self.r = rng
        self.out: list[str] = []

    def pick(self, xs):
        return self.r.choice(xs)

    def say(self, s: str) -> None:
        self.out.append(s[0].upper() + s[1:])

    def character(self, avoid: str = "") -> Char:
        girl = self.r.random() < 0.5
        name = self.pick([n for n in (GIRLS if girl else BOYS) if n != avoid])
        kind = self.pick(KIDS[:1] if girl else KIDS[1:]) if self.r.random() < 0.5 else self.pick(ANIMALS)
        return Char(name, kind, girl)

    # ---- parts ----------------------------------------------------------------------------------

    def beginning(self, h: Char, place: str) -> None:
        size, trait = self.pick(SIZES), self.pick(TRAITS)
        k = self.r.randrange(5)
        if k == 0:
            self.say(f"once upon a time, there was {_a(size)} {h.kind} named {h.name}.")
        elif k == 1:
            self.say(f"once upon a time, in {_a(self.pick(['big', 'small', 'quiet', 'pretty']))} {place}, "
                     f"there lived {_a(trait)} {h.kind} named {h.name}.")
        elif k == 2:
            self.say(f"once upon a time, there was {_a(trait)} {size} {h.kind}. {h.His} name was {h.name}.")
        elif k == 3:
            self.say(f"one {self.pick(WEATHER)} day, {_a(size)} {h.kind} named {h.name} went to the {place}.")
        else:
            self.say(f"once there was {_a(trait)} {h.kind} called {h.name}.")
        k = self.r.randrange(5)  # 3 and 4: no second sentence, for shorter stories
        if k == 0:
            self.say(f"{h.he} loved to {self.pick(ACTIVITIES)}.")
        elif k == 1:
            self.say(f"{h.name} was very {trait} and loved to {self.pick(ACTIVITIES)} in the {place}.")
        elif k == 2:
            self.say(f"every day, {h.he} liked to {self.pick(ACTIVITIES)} with {h.his} {self.pick(HELPERS)}.")

    def lost(self, h: Char, f: Char, place: str) -> None:
        obj, col, hide = self.pick(OBJECTS), self.pick(COLOURS), self.pick(HIDES)
        self.say(f"{h.he} had {_a(col)} {obj} that {h.he} loved very much.")
        self.say(f"one day, {h.name} went to the {place} to play with {h.his} {obj}.")
        self.say(f"but when {h.he} looked again, the {obj} was gone! {h.name} felt very {self.pick(SAD)}.")
        self.say(f'"where is my {obj}?" {h.he} cried.')
        self.say(f"just then, {_a(f.kind)} named {f.name} came by.")
        self.say(f'"why are you {self.pick(SAD)}?" asked {f.name}. "i lost my {col} {obj}," said {h.name}.')
        self.say(f'"do not worry, i will help you," said {f.name}.')
        self.say(f"they looked everywhere. at last, {f.name} found the {obj} {hide}.")
        self.say(f"{h.name} was so {self.pick(GLAD)}. \"thank you, {f.name}!\" {h.he} said.")
        self.moral = self.pick(["friends help each other", "it is good to help", "it is good to look carefully"])

    def stuck(self, h: Char, f: Char, place: str) -> None:
        obj, col, high = self.pick(["kite", "ball", "hat"]), self.pick(COLOURS), self.pick(HIGH)
        self.say(f"one {self.pick(WEATHER)} day, {h.name} was playing with {h.his} {col} {obj} in the {place}.")
        self.say(f"the wind blew hard, and the {obj} flew up onto {high}! {h.name} could not reach it.")
        self.say(f"{h.he} felt {self.pick(SAD)}. then {h.he} saw {h.his} friend {f.name}, {_a(f.kind)}.")
        self.say(f'"can you help me get my {obj}?" asked {h.name}.')
        if self.r.random() < 0.5:
            self.say(f'"yes, i can climb!" said {f.name}. {f.he} climbed up and got the {obj}.')
        else:
            self.say(f'"let us get a long stick," said {f.name}. together they pushed the {obj} down.')
        self.say(f"{h.name} smiled. \"you are a good friend,\" {h.he} said.")
        self.moral = self.pick(["friends help each other", "working together is best"])

    def share(self, h: Char, f: Char, place: str) -> None:
        food = self.pick(FOODS)
        self.say(f"one day, {h.name} had a big {food}. {h.he} took it to the {place}.")
        self.say(f"there {h.he} met {_a(f.kind)} named {f.name}. {f.name} looked very {self.pick(SAD)}.")
        self.say(f'"what is wrong?" asked {h.name}. "i am so hungry," said {f.name}.')
        if self.r.random() < 0.5:
            self.say(f"{h.name} wanted to eat the {food} all by {h.him}self. but then {h.he} thought about {f.name}.")
        else:
            self.say(f"{h.name} looked at {h.his} {food}. it was the only one {h.he} had.")
        self.say(f'"here, you can have half," said {h.name}. {h.he} gave half of the {food} to {f.name}.')
        self.say(f"{f.name} was very {self.pick(GLAD)}. they ate the {food} together and laughed.")
        self.moral = self.pick(["sharing is good", "sharing makes friends happy", "it is good to be kind"])

    def broken(self, h: Char, f: Char, place: str) -> None:
        obj, col = self.pick(["toy car", "doll", "drum", "cup", "kite", "box"]), self.pick(COLOURS)
        helper = self.pick(HELPERS)
        self.say(f"{h.name} had {_a(col)} {obj}. {h.he} played with it every day.")
        self.say(f"one day, {f.name} the {f.kind} came to play. {f.he} wanted to see the {obj} too.")
        self.say(f"they both pulled the {obj}, and it broke! {h.name} and {f.name} were very {self.pick(SAD)}.")
        self.say(f'"i am sorry," said {f.name}. "i am sorry too," said {h.name}.')
        self.say(f"they went to {h.his} {helper}. \"can you fix it?\" asked {h.name}.")
        self.say(f"the {helper} smiled and fixed the {obj} with some glue. it was as good as new!")
        self.say(f"after that, {h.name} and {f.name} took turns to play with the {obj}.")
        self.moral = self.pick(["it is good to share and take turns", "saying sorry is good"])

    def scared(self, h: Char, f: Char, place: str) -> None:
        thing = self.pick(["a loud noise", "a big shadow", "a strange sound", "something move"])
        self.say(f"one night, {h.name} was in the {place}. it was very dark.")
        self.say(f"suddenly, {h.he} heard {thing}. {h.name} was {self.pick(['scared', 'afraid', 'worried'])}.")
        self.say(f'"who is there?" {h.he} asked in a small voice.')
        sound = SOUNDS.get(f.kind, "hello")
        self.say(f'"{sound}! it is me, {f.name}!" said a voice. it was {_a(f.kind)} with a little light.')
        self.say(f"{f.name} was lost and could not find the way home.")
        self.say(f'"i will help you," said {h.name}. they walked together, and soon they found {f.his} home.')
        self.say(f"{h.name} was not scared any more. {h.he} felt {self.pick(GLAD)} and brave.")
        self.moral = self.pick(["being brave is good", "things are not always as scary as they seem"])

    def want(self, h: Char, f: Char, place: str) -> None:
        food = self.pick(["cake", "pie", "cookie"])
        helper = self.pick(HELPERS)
        self.say(f"one day, {h.name} wanted to make a {food} for {h.his} {helper}.")
        self.say(f"{h.he} asked {h.his} friend {f.name} to help. \"yes!\" said {f.name}.")
        self.say(f"they got flour, milk and eggs. but the {food} fell on the floor! it was a big mess.")
        self.say(f'"oh no!" said {h.name}. {h.he} was {self.pick(SAD)}. "let us try again," said {f.name}.')
        self.say(f"this time they were very careful. the {food} was {self.pick(COLOURS)} and sweet.")
        self.say(f"the {helper} was so {self.pick(GLAD)}. \"this is the best {food}!\" said the {helper}.")
        self.moral = self.pick(["it is good to try again", "friends help each other"])

    def ending(self, h: Char, f: Char) -> None:
        k = self.r.randrange(4)
        if k == 0:
            self.say(f"from that day on, {h.name} and {f.name} were best friends.")
        elif k == 1:
            self.say(f"{h.name} learned that {self.moral}.")
        elif k == 2:
            self.say(f"{h.name} and {f.name} played together until the sun went down. the end.")
        else:
            self.say(f"that night, {h.name} went to bed with a big smile. {h.he} was very {self.pick(GLAD)}.")

    def text(self) -> str:
        h = self.character()
        f = self.character(avoid=h.name)
        place = self.pick(PLACES)
        self.beginning(h, place)
        self.pick([self.lost, self.stuck, self.share, self.broken, self.scared, self.want])(h, f, place)
        self.ending(h, f)
        # sentence case after a full stop, question or exclamation mark and at an opening quote, but not
        # for the `said` that follows a closing one
        s = " ".join(self.out)
        s = re.sub(r'([.!?](?: "|" "| )|^")([a-z])', lambda m: m.group(1) + m.group(2).upper(), s)
        return re.sub(r'(?<![a-z])i(?=[ ,.!?])', "I", s)


def stories(seed: int) -> Iterator[str]:
    """An endless, deterministic stream of stories for a seed."""
    rng = random.Random(seed)
    while True:
        yield Story(rng).text()


def generate(seed: int, n: int) -> list[str]:
    """The first n stories of the stream for `seed`."""
    it = stories(seed)
    return [next(it) for _ in range(n)]


def generate_bytes(seed: int, megabytes: float) -> list[str]:
    """Stories for `seed` until their text adds up to about `megabytes` MB."""
    out, total, limit = [], 0, int(megabytes * 1e6)
    for s in stories(seed):
        if total >= limit:
            return out
        out.append(s)
        total += len(s) + 1


def words(text: str) -> list[str]:
    """The lowercase words of a text (what the readability check compares with the corpus)."""
    return re.findall(r"[a-z]+", text.lower())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stories", type=int, default=3)
    a = ap.parse_args()
    for s in generate(a.seed, a.stories):
        print(s + "\n")


if __name__ == "__main__":
    main()
