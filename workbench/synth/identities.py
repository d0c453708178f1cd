"""Names and birth dates for holders without a national id, with the errors registries have.

``linkage_sources(n_persons, seed)`` draws ``n_persons`` true identities (first and last name by
a skewed frequency, as real names are, sex and birth date) and renders two holders' sources from
overlapping parts of them; each rendered record may carry a typo, a day/month transposition,
first and last name swapped or a missing value, each at a rate of ``ErrorRates``. The truth
(which record is which person, and so which record of A is which record of B) is returned
beside the sources, never inside them.
The random stream is keyed by (seed, "identities"), so the existing tables of
``workbench.synth.generate`` are unchanged. See docs/linkage.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FEMALE = ("Maria Anna Emma Sophie Laura Julia Sara Lena Elena Eva Clara Hannah Lisa Marie Nina "
          "Paula Lea Ida Ella Mia Alice Ines Rosa Helena Johanna Katharina Martina Petra Sabine "
          "Ursula Monika Ingrid Greta Astrid Birgit Carla Diana Frieda Gisela Heidi Irene Jana "
          "Karin Lotte Magda Nora Olga Renate Silke Tanja Ulla Vera Wilma Yvonne Zoe").split()
MALE = ("Thomas Michael Andreas Peter Jan Lukas Jonas Paul Felix Leon David Daniel Martin Stefan "
        "Markus Tobias Simon Johannes Matthias Christian Alexander Florian Sebastian Niklas Max "
        "Ben Noah Elias Finn Anton Emil Oskar Karl Hans Jürgen Klaus Dieter Wolfgang Uwe Bernd "
        "Frank Holger Jens Kai Lars Nils Olaf Rainer Sven Timo Ulrich Volker Walter Xaver").split()
LAST = ("Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch "
        "Bauer Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann "
        "Hartmann Lange Schmitt Werner Schmitz Krause Meier Lehmann Schmid Schulze Maier Köhler "
        "Herrmann König Walter Mayer Huber Kaiser Fuchs Peters Lang Scholz Möller Weiß Jung Hahn "
        "Schubert Vogel Friedrich Keller Günther Frank Berger Winkler Roth Beck Lorenz Baumann "
        "Franke Albrecht Schuster Simon Ludwig Böhm Winter Kraus Martin Schumacher Krämer Vogt "
        "Stein Jäger Otto Sommer Groß Seidel Heinrich Brandt Haas Schreiber Graf Schulte Dietrich "
        "Ziegler Kuhn Kühn Pohl Engel Horn Busch Bergmann Thomas Voigt Sauer Arnold Wolff Pfeiffer "
        "Janssen DeVries Jansen Visser Smit Bakker Dijkstra Rossi Russo Ferrari Esposito Bianchi "
        "Romano Colombo Garcia Fernandez Lopez Martinez Sanchez Perez Dubois Durand Leroy Moreau "
        "Laurent Lefebvre Michel Nowak Kowalski Wisniewski Novak Svoboda Horvath Nagy Nielsen "
        "Hansen Jensen Andersen Larsen Johansson Karlsson Nilsson Virtanen Korhonen Murphy Kelly "
        "Walsh Byrne Silva Santos Ferreira Pereira Costa Papadopoulos").split()
ALPHABET = "abcdefghijklmnopqrstuvwxyzäöü"


@dataclass(frozen=True)
class ErrorRates:
    """Per-record rates of each error in a rendered source (each drawn independently)."""

    typo: float = 0.08  # per name field: a character substituted, inserted, deleted or swapped
    date_swap: float = 0.04  # day and month transposed (when both are <= 12 and differ)
    date_typo: float = 0.02  # one digit of the birth date wrong
    name_swap: float = 0.03  # first and last name in each other's field
    missing: float = 0.03  # per field: left empty


@dataclass
class LinkageSources:
    """Two holders' sources (``record_id, first_name, last_name, birth_date``) and the truth."""

    a: pd.DataFrame
    b: pd.DataFrame
    truth: pd.DataFrame  # a_record, b_record: the same person
    persons: pd.DataFrame  # the true identities (person, first_name, last_name, sex, birth_date)
    records: pd.DataFrame  # record_id (of A and of B), person: which record is which person


def _zipf_choice(rng, names, n: int) -> np.ndarray:
    # Rank-frequency of names is roughly Zipf's: a few very common, a long tail.
    weights = 1 / np.arange(1, len(names) + 1) ** 0.9
    return np.asarray(names, dtype=object)[rng.choice(len(names), n, p=weights / weights.sum())]


def persons(n: int, seed: int) -> pd.DataFrame:
    """``n`` true identities, deterministic for (n, seed)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1D]))
    female = rng.random(n) < 0.51
    first = np.where(female, _zipf_choice(rng, FEMALE, n), _zipf_choice(rng, MALE, n))
    birth = np.datetime64("1929-01-01") + rng.integers(0, 95 * 365, n).astype("timedelta64[D]")
    return pd.DataFrame({"person": np.arange(n), "first_name": first,
                         "last_name": _zipf_choice(rng, LAST, n),
                         "sex": np.where(female, "F", "M"),
                         "birth_date": pd.Series(birth).dt.strftime("%Y-%m-%d")})


def _typo(rng, text: str) -> str:
    i = int(rng.integers(len(text)))
    kind = int(rng.integers(4))
    c = ALPHABET[int(rng.integers(len(ALPHABET)))]
    if kind == 0:
        return text[:i] + c + text[i + 1:]
    if kind == 1:
        return text[:i] + c + text[i:]
    if kind == 2 and len(text) > 2:
        return text[:i] + text[i + 1:]
    i = min(i, len(text) - 2)
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


def _render(rng, true: pd.DataFrame, rates: ErrorRates, prefix: str) -> pd.DataFrame:
    rows = []
    for first, last, birth in zip(true["first_name"], true["last_name"], true["birth_date"],
                                  strict=True):
        u = rng.random(8)
        if u[0] < rates.typo:
            first = _typo(rng, first)
        if u[1] < rates.typo:
            last = _typo(rng, last)
        if u[2] < rates.name_swap:
            first, last = last, first
        year, month, dom = birth.split("-")
        if u[3] < rates.date_swap and int(dom) <= 12 and dom != month:
            birth = f"{year}-{dom}-{month}"
        if u[4] < rates.date_typo:
            digits = list(birth.replace("-", ""))
            at = int(rng.integers(2, 8))  # not the century: '1' or '2' stays plausible
            digits[at] = str((int(digits[at]) + int(rng.integers(1, 10))) % 10)
            birth = "{}{}{}{}-{}{}-{}{}".format(*digits)
        values = [None if u[5 + f] < rates.missing else v
                  for f, v in enumerate((first, last, birth))]
        rows.append(values)
    out = pd.DataFrame(rows, columns=["first_name", "last_name", "birth_date"], dtype=object)
    out.insert(0, "record_id", [f"{prefix}-{i:07d}" for i in range(len(out))])
    return out


def linkage_sources(n_persons: int = 2000, seed: int = 0, overlap: float = 0.5,
                    rates: ErrorRates | None = None) -> LinkageSources:
    """Holder A sees a random 75 % of the persons, holder B enough of them that ``overlap`` of
    all persons are in both; rows are shuffled, so record order says nothing."""
    rates = rates or ErrorRates()
    people = persons(n_persons, seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1D, 1]))
    order = rng.permutation(n_persons)
    n_a, n_both = int(0.75 * n_persons), int(overlap * n_persons)
    in_a = order[:n_a]
    in_b = np.concatenate([order[n_a - n_both:n_a], order[n_a:]])
    in_a, in_b = rng.permutation(in_a), rng.permutation(in_b)
    a = _render(rng, people.iloc[in_a], rates, "a")
    b = _render(rng, people.iloc[in_b], rates, "b")
    where_b = {p: i for i, p in enumerate(in_b)}
    pairs = [(a.record_id[i], b.record_id[where_b[p]]) for i, p in enumerate(in_a) if p in where_b]
    truth = pd.DataFrame(pairs, columns=["a_record", "b_record"])
    records = pd.DataFrame({"record_id": [*a.record_id, *b.record_id],
                            "person": np.concatenate([in_a, in_b])})
    return LinkageSources(a, b, truth, people, records)


# -- the generator's patients with names: sources with and without a national id ----------------
def register(n_patients: int, seed: int, chunk_size: int = 100_000) -> pd.DataFrame:
    """The true identity of every patient of ``workbench.synth.generate(n_patients, seed)``:
    ``national_id, first_name, last_name, sex, birth_date`` (ISO text). Birth date and sex are the
    simulated ones (the population is simulated again, chunk by chunk as the generator does);
    names are drawn from their own stream, so the generator's tables are unchanged."""
    from workbench.synth import national_ids
    from workbench.synth.population import simulate

    parts = []
    for index, first in enumerate(range(0, n_patients, chunk_size)):
        n = min(chunk_size, n_patients - first)
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        population = simulate(rng, n).persons
        names = np.random.default_rng(np.random.SeedSequence([seed, 0x1D, 2, index]))
        female = np.asarray(population["female"], dtype=bool)
        days = np.asarray(population["birth"], dtype=np.float64).astype("int64")
        parts.append(pd.DataFrame({
            "national_id": np.asarray(national_ids(first, n, seed), dtype=object),
            "first_name": np.where(female, _zipf_choice(names, FEMALE, n),
                                   _zipf_choice(names, MALE, n)),
            "last_name": _zipf_choice(names, LAST, n),
            "sex": np.where(female, "F", "M"),
            "birth_date": pd.Series(days.astype("datetime64[D]")).dt.strftime("%Y-%m-%d")}))
    return pd.concat(parts, ignore_index=True)


def as_written(people: pd.DataFrame, seed: int, holder: str,
               rates: ErrorRates | None = None) -> pd.DataFrame:
    """How one holder's registry wrote each person (``national_id`` kept as the index of the
    truth): the errors of ``ErrorRates``, drawn once per person and holder, so every row of that
    person at that holder carries the same spelling."""
    rng = np.random.default_rng(np.random.SeedSequence(
        [seed, 0x1D, 3, *holder.encode()]))
    written = _render(rng, people, rates or ErrorRates(), holder)
    written.index = people["national_id"].to_numpy()
    return written.drop(columns="record_id")


def without_national_id(tables: dict[str, pd.DataFrame], written: pd.DataFrame
                        ) -> dict[str, pd.DataFrame]:
    """A holder's raw tables as a source without a national id: ``national_id`` replaced by the
    person's name and birth date as this holder wrote them (``as_written``). The truth (which
    row is which national id) stays with the caller."""
    out = {}
    for name, frame in tables.items():
        ids = frame["national_id"].astype(str).to_numpy()
        identity = written.reindex(ids)
        frame = frame.drop(columns="national_id").reset_index(drop=True)
        for position, column in enumerate(("first_name", "last_name", "birth_date")):
            frame.insert(position, column, identity[column].to_numpy())
        out[name] = frame
    return out


def with_names(frame: pd.DataFrame, written: pd.DataFrame) -> pd.DataFrame:
    """A raw table with a national id and, beside it, each person's name as the holder wrote it
    (a holder that contributes to the linkage unit's reference index)."""
    identity = written.reindex(frame["national_id"].astype(str).to_numpy())
    frame = frame.reset_index(drop=True).copy()
    position = frame.columns.get_loc("national_id") + 1
    for offset, column in enumerate(("first_name", "last_name")):
        frame.insert(position + offset, column, identity[column].to_numpy())
    return frame
