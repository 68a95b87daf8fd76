"""Seeded, deterministic fine-tuning tasks for the benchmarks (``time_to_model.py``, ``learning_quality.py``).

Every classification task has a training and a test side built from *disjoint* templates and vocabulary: a test
sentence never uses a template or a content word the training file has, so held-out accuracy measures whether the
model learned the concept, not the strings. All prompts use the seed's shape: ``"<text>\\n\\n###\\n\\n"`` and a
completion ``" <label> END"`` (the chat task uses messages and ends its answers with ``**STOP**``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

SEPARATOR = "\n\n###\n\n"
STOP = " END"
CHAT_STOP = " **STOP**"


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # "classify" | "generate" | "chat"
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    labels: list[str]


def _pc(text: str, answer: str) -> dict[str, Any]:
    return {"prompt": f"{text}{SEPARATOR}", "completion": f" {answer}{STOP}"}


def _fill(rng: random.Random, template: str, words: dict[str, list[str]]) -> str:
    out = template
    for key, values in words.items():
        while "{" + key + "}" in out:
            out = out.replace("{" + key + "}", rng.choice(values), 1)
    return out


def _balanced(
    rng: random.Random, n: int, sides: dict[str, tuple[list[str], dict[str, list[str]]]]
) -> list[dict[str, Any]]:
    """``n`` examples spread evenly over the labels, each a filled template of its label's side, no duplicates."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    labels = list(sides)
    attempts = 0
    while len(rows) < n and attempts < n * 200:
        attempts += 1
        label = labels[len(rows) % len(labels)]
        templates, words = sides[label]
        text = _fill(rng, rng.choice(templates), words)
        if text in seen:
            continue
        seen.add(text)
        rows.append(_pc(text, label))
    rng.shuffle(rows)
    return rows


# --- binary sentiment -------------------------------------------------------------------------------------------

_SENT_TRAIN_T = {
    "positive": [
        "The {thing} was {pos}.",
        "I found the {thing} {pos} and I would buy it again.",
        "What a {pos} {thing}, really.",
        "Honestly the {thing} is {pos}.",
    ],
    "negative": [
        "The {thing} was {neg}.",
        "I found the {thing} {neg} and I would never buy it again.",
        "What a {neg} {thing}, really.",
        "Honestly the {thing} is {neg}.",
    ],
}
_SENT_TRAIN_W = {
    "thing": ["blender", "jacket", "novel", "hotel room", "pizza", "laptop", "headphones", "sofa"],
    "pos": ["great", "wonderful", "excellent", "lovely", "fantastic", "superb"],
    "neg": ["terrible", "awful", "horrible", "dreadful", "useless", "disappointing"],
}
_SENT_TEST_T = {
    "positive": [
        "My new {thing2} works {posadv}, {posend}",
        "We were {posfeel} with our {thing2}.",
        "{posend} The {thing2} exceeded every expectation.",
    ],
    "negative": [
        "My new {thing2} broke within a day, {negend}",
        "We were {negfeel} with our {thing2}.",
        "{negend} The {thing2} stopped working after a week.",
    ],
}
_SENT_TEST_W = {
    "thing2": ["vacuum cleaner", "bicycle", "coffee maker", "tent", "wristwatch", "printer", "backpack", "kettle"],
    "posadv": ["perfectly", "flawlessly", "beautifully"],
    "posend": ["I am delighted!", "highly recommended!", "absolutely brilliant!", "five stars from me!"],
    "posfeel": ["thrilled", "delighted", "overjoyed", "very happy"],
    "negend": ["what a waste of money.", "I want a refund.", "complete junk.", "zero stars from me."],
    "negfeel": ["furious", "very unhappy", "deeply frustrated", "let down"],
}


def sentiment(n_train: int, n_test: int, seed: int = 7) -> Task:
    rng = random.Random(seed)
    train = _balanced(rng, n_train, {k: (_SENT_TRAIN_T[k], _SENT_TRAIN_W) for k in _SENT_TRAIN_T})
    test = _balanced(rng, n_test, {k: (_SENT_TEST_T[k], _SENT_TEST_W) for k in _SENT_TEST_T})
    return Task("sentiment", "classify", train, test, ["positive", "negative"])


# --- on/off-topic guard for a billing chatbot -------------------------------------------------------------------

_GUARD_TRAIN_T = {
    "on": [
        "Why is there an extra {bill} on my {doc}?",
        "Can you explain the {bill} on my {doc} this month?",
        "I was charged twice for my {doc}, please help.",
        "How do I pay the {bill} shown on my {doc}?",
        "Is the {bill} on my {doc} correct?",
        "I don't understand the {bill} listed on my {doc}.",
    ],
    "off": [
        "What is the best way to {hobby}?",
        "Can you tell me a fun fact about {animal}?",
        "Who won the {sport} match last night?",
        "Write a short poem about {animal}.",
        "Tell me a joke about {animal}.",
        "What are the rules of {sport}?",
    ],
}
_GUARD_TRAIN_W = {
    "bill": ["charge", "fee", "amount", "late fee", "balance", "service fee", "tax", "surcharge", "overdue amount"],
    "doc": ["invoice", "bill", "statement", "account statement", "quarterly invoice", "latest bill"],
    "hobby": [
        "learn guitar",
        "grow tomatoes",
        "paint with watercolors",
        "train for a marathon",
        "bake sourdough",
        "learn chess",
    ],
    "animal": ["penguins", "elephants", "owls", "dolphins", "giraffes", "octopuses", "bees"],
    "sport": ["football", "tennis", "basketball", "cricket", "hockey", "rugby", "baseball"],
}
_GUARD_TEST_T = {
    "on": [
        "I need a refund for the {sub} I cancelled.",
        "My {card} was declined when renewing my {sub}.",
        "Please update the {card} used for my {sub} payments.",
        "The receipt for my {sub} shows the wrong price.",
    ],
    "off": [
        "Recommend a good recipe for {food}.",
        "How far is {place} from the equator?",
        "Translate 'good morning' into {lang}.",
        "What movies are similar to {film}?",
        "Suggest a weekend itinerary for {place}.",
        "What is a famous dish from {place}?",
    ],
}
_GUARD_TEST_W = {
    "sub": ["subscription", "premium plan", "monthly membership", "annual plan", "family plan", "student membership"],
    "card": ["credit card", "debit card", "card on file", "virtual card"],
    "food": ["lasagna", "banana bread", "vegetable curry", "pancakes", "ramen", "apple pie"],
    "place": ["Norway", "Peru", "Kenya", "Japan", "Chile", "Iceland"],
    "lang": ["Italian", "German", "Swahili", "Korean", "Portuguese", "Hindi"],
    "film": ["Inception", "Jurassic Park", "Titanic", "The Matrix", "Casablanca", "Up"],
}


def guard(n_train: int, n_test: int, seed: int = 11) -> Task:
    rng = random.Random(seed)
    train = _balanced(rng, n_train, {k: (_GUARD_TRAIN_T[k], _GUARD_TRAIN_W) for k in _GUARD_TRAIN_T})
    test = _balanced(rng, n_test, {k: (_GUARD_TEST_T[k], _GUARD_TEST_W) for k in _GUARD_TEST_T})
    return Task("guard", "classify", train, test, ["on", "off"])


# --- 5-way support e-mail triage --------------------------------------------------------------------------------

_TRIAGE_TRAIN = {
    "billing": [
        "Hello, my invoice shows a charge I do not recognise.",
        "Hi team, I was billed twice this month for the same order.",
        "Could you send me a corrected invoice with my company's tax number?",
        "The amount on my bill is higher than the price I agreed to.",
        "I was charged a late fee even though I settled on time.",
        "Please explain the extra line item on this month's statement.",
        "The discount code was not applied to my invoice total.",
        "Could I have copies of last year's invoices for my accountant?",
    ],
    "technical": [
        "The app crashes every time I open the settings page.",
        "I get an error 500 when I try to upload a photo.",
        "The website is extremely slow and pages never finish loading.",
        "After the latest update the program freezes on startup.",
        "The search function returns nothing no matter what I type.",
        "The page shows a blank white screen after I press save.",
        "Uploading a document fails halfway with a timeout.",
        "The sound in your app cuts out constantly.",
    ],
    "account": [
        "I forgot my password and the reset email never arrives.",
        "Please change the email address on my profile.",
        "I am locked out of my account after too many login attempts.",
        "How do I delete my user profile permanently?",
        "My security question answer is suddenly rejected.",
        "Please close my account and remove my personal data.",
        "I registered with a second email address by mistake and have duplicate profiles.",
        "How can I add a second user to my profile?",
    ],
    "shipping": [
        "My parcel has not arrived although it was sent two weeks ago.",
        "The tracking number you gave me does not work.",
        "The box was delivered to the wrong address.",
        "When will my order be dispatched from your warehouse?",
        "The parcel arrived damaged and the item inside is broken.",
        "I need to change the address on an order I just placed.",
        "Only half of my order arrived in the box.",
        "The estimated arrival date of my order keeps moving later.",
    ],
    "feedback": [
        "I just wanted to say your staff were very kind to me.",
        "A suggestion: a dark mode would make the product even better.",
        "Thank you for the quick help last week, much appreciated.",
        "I think the new design looks cleaner than the old one.",
        "Your new menu layout is much easier to use.",
        "I love the product, it has made my work much easier.",
        "The support agent I spoke with was patient and friendly.",
        "Maybe add a way to filter by date, that would help a lot.",
    ],
}
_TRIAGE_OPEN = ["", "Dear support, ", "Hi, ", "Good morning, "]
_TRIAGE_CLOSE = ["", " Thanks.", " Regards, Sam", " Best wishes."]
_TRIAGE_TEST = {
    "billing": [
        "Why did my credit card get debited for a refund that was promised to me?",
        "The receipt lists VAT twice, please fix the payment record.",
        "I cancelled my subscription yet you still took money from my bank.",
        "Your quote said forty dollars but I paid sixty at checkout.",
    ],
    "technical": [
        "Notifications stopped popping up on my phone since Tuesday.",
        "The sync button spins forever and my files never appear on the tablet.",
        "Video calls drop after ten seconds with a connection failure message.",
        "The printer driver refuses to install on my computer.",
    ],
    "account": [
        "Two-factor codes are no longer sent to my phone so I cannot sign in.",
        "Someone else seems to have logged into my username from abroad.",
        "Please merge my two logins into a single membership.",
        "I would like to rename the display name on my login.",
    ],
    "shipping": [
        "The courier left my package in the rain and it is soaked.",
        "It has been ten days and the delivery van never came.",
        "Can you ship my purchase by express post instead of standard mail?",
        "The shipment got stuck in customs, what should I do?",
    ],
    "feedback": [
        "Big compliments to the person who answered my chat yesterday.",
        "It would be lovely if you offered more colour options in future.",
        "Your tutorial videos are brilliant, keep making them.",
        "Just a note of appreciation for an excellent experience overall.",
    ],
}
_TRIAGE_TEST_OPEN = ["", "Hey there, ", "To whom it may concern: ", "Hello again, "]
_TRIAGE_TEST_CLOSE = ["", " Cheers.", " Kind regards, Alex", " Many thanks in advance."]


def _triage_rows(
    rng: random.Random, n: int, bodies: dict[str, list[str]], opens: list[str], closes: list[str]
) -> list[dict[str, Any]]:
    labels = list(bodies)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    attempts = 0
    while len(rows) < n and attempts < n * 200:
        attempts += 1
        label = labels[len(rows) % len(labels)]
        text = rng.choice(opens) + rng.choice(bodies[label]) + rng.choice(closes)
        if text in seen:
            continue
        seen.add(text)
        rows.append(_pc(f"Subject: support request\n{text}", label))
    rng.shuffle(rows)
    return rows


def triage(n_train: int, n_test: int, seed: int = 13) -> Task:
    rng = random.Random(seed)
    train = _triage_rows(rng, n_train, _TRIAGE_TRAIN, _TRIAGE_OPEN, _TRIAGE_CLOSE)
    test = _triage_rows(rng, n_test, _TRIAGE_TEST, _TRIAGE_TEST_OPEN, _TRIAGE_TEST_CLOSE)
    return Task("triage", "classify", train, test, list(_TRIAGE_TRAIN))


# --- generation in the seed's style (separator, " END") -----------------------------------------------------------

_GEN_ITEMS_TRAIN = ["umbrella", "lamp", "bicycle helmet", "kettle", "notebook", "backpack", "desk chair", "scarf"]
_GEN_ITEMS_TEST = ["garden hose", "toaster", "yoga mat", "frying pan", "alarm clock", "raincoat"]
_GEN_ADJ = ["sturdy", "light", "bright", "compact", "colourful", "quiet", "cheap", "elegant"]


def _gen_row(rng: random.Random, item: str) -> dict[str, Any]:
    a, b = rng.sample(_GEN_ADJ, 2)
    prompt = f"Write a one-line product description.\nProduct: {item}\nFeatures: {a}, {b}"
    completion = f"A {a} and {b} {item} for every day"
    return _pc(prompt, completion)


def generation(n_train: int, n_test: int, seed: int = 17) -> Task:
    rng = random.Random(seed)
    train = [_gen_row(rng, rng.choice(_GEN_ITEMS_TRAIN)) for _ in range(n_train)]
    test = [_gen_row(rng, rng.choice(_GEN_ITEMS_TEST)) for _ in range(n_test)]
    return Task("generation", "generate", train, test, [])


# --- chatbot answers ending in **STOP** --------------------------------------------------------------------------

_CHAT_Q_TRAIN = [
    ("What are your opening hours?", "We are open from nine to five, Monday to Friday."),
    ("Do you deliver on weekends?", "Yes, we deliver on Saturdays but not on Sundays."),
    ("Can I return an item?", "Yes, you can return any item within thirty days."),
    ("Where is your shop?", "Our shop is on Main Street, next to the bakery."),
    ("Do you sell gift cards?", "Yes, gift cards are available in the shop and online."),
    ("How can I contact you?", "You can call us or write to our support address."),
]
_CHAT_Q_TEST = [
    "Is there parking near the store?",
    "Do you offer student discounts?",
    "Can I pay with cash?",
    "Are pets allowed inside?",
    "How long does delivery take?",
    "Do you have a loyalty program?",
]
_CHAT_SYSTEM = "You are the friendly assistant of a small shop. End every answer with **STOP**."
_CHAT_PREFIX = ["", "Hi! ", "Hello, ", "Quick question: "]


def chat(n_train: int, n_test: int, seed: int = 19) -> Task:
    rng = random.Random(seed)
    train = []
    for i in range(n_train):
        q, a = _CHAT_Q_TRAIN[i % len(_CHAT_Q_TRAIN)]
        train.append(
            {
                "messages": [
                    {"role": "system", "content": _CHAT_SYSTEM},
                    {"role": "user", "content": rng.choice(_CHAT_PREFIX) + q},
                    {"role": "assistant", "content": a + CHAT_STOP},
                ]
            }
        )
    test = [
        {
            "messages": [
                {"role": "system", "content": _CHAT_SYSTEM},
                {"role": "user", "content": rng.choice(_CHAT_PREFIX) + _CHAT_Q_TEST[i % len(_CHAT_Q_TEST)]},
            ]
        }
        for i in range(n_test)
    ]
    return Task("chat", "chat", train, test, [])


def seed_sentiment(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """The seed's sentiment shape for the time-to-model benchmark (training templates only)."""
    return sentiment(n, 2, seed).train
