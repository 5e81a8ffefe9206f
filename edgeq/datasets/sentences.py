"""Reproducible English sentences over eight topics, for text-model calibration and tests.

    python -m edgeq.datasets.sentences 500 > sentences.txt

Template sentences with fixed seeds, written here rather than downloaded: nearest neighbours mostly
share a topic, so a nearest-neighbour check of sentence embeddings is not trivial.
"""

from __future__ import annotations

import random
import sys

TOPICS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "weather": (["The morning", "Tomorrow", "The weekend", "The afternoon", "Tonight"],
                ["will bring", "brought", "should see", "may turn into"],
                ["heavy rain", "a cold wind", "bright sunshine", "thick fog", "a thunderstorm", "light snow"]),
    "cooking": (["My grandmother", "The chef", "Our neighbour", "The recipe", "A friend"],
                ["bakes", "recommends", "slowly simmers", "burned"],
                ["fresh bread", "a tomato soup", "garlic with butter", "a chocolate cake", "rice and beans", "the onions"]),
    "finance": (["The central bank", "Investors", "The company", "Analysts", "The market"],
                ["expect", "reported", "worry about", "cut"],
                ["higher interest rates", "quarterly profits", "a falling currency", "rising inflation",
                 "bond yields", "the stock price"]),
    "sports": (["The home team", "The goalkeeper", "Our coach", "The striker", "The young player"],
               ["won", "lost", "trained for", "scored in"],
               ["the final match", "the cup", "the penalty shootout", "the second half", "the league", "extra time"]),
    "computers": (["The server", "My laptop", "The database", "The compiler", "The new update"],
                  ["crashed during", "speeds up", "slowed down", "failed to finish"],
                  ["the backup", "the build", "the query", "the installation", "the download", "the test suite"]),
    "travel": (["The train", "Our flight", "The ferry", "The bus to the airport", "The night coach"],
               ["was delayed by", "left despite", "arrived after", "was cancelled because of"],
               ["a strike", "the storm", "a long queue", "engine trouble", "heavy traffic", "a missing pilot"]),
    "health": (["The doctor", "A nurse", "The patient", "The clinic", "The study"],
               ["recommends", "warned about", "measured", "treated"],
               ["high blood pressure", "a sprained ankle", "daily exercise", "a mild fever", "poor sleep",
                "a vitamin deficiency"]),
    "garden": (["The gardener", "My sister", "The old farmer", "Our school", "The village"],
               ["planted", "watered", "harvested", "pruned"],
               ["the apple trees", "roses by the fence", "tomatoes", "the hedge", "potatoes", "sunflowers"]),
}
ENDINGS = ["", " yesterday", " this week", " again", " as expected", " for the first time", " last year"]


def text_set(count: int, seed: int = 0) -> list[str]:
    """`count` distinct template sentences, topics interleaved, reproducible for a seed."""
    rng = random.Random(seed)
    names = sorted(TOPICS)
    seen: set[str] = set()
    texts: list[str] = []
    while len(texts) < count:
        subjects, verbs, objects = TOPICS[names[len(texts) % len(names)]]
        sentence = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice(ENDINGS)}."
        if sentence not in seen:
            seen.add(sentence)
            texts.append(sentence)
    return texts


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    sys.stdout.write("\n".join(text_set(count, seed)) + "\n")


if __name__ == "__main__":
    main()
