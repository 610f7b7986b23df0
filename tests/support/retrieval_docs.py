"""A small document set with known answers, for the retrieval tests (written for Voxline).

Each document is a few paragraphs on one made-up subject, so no answer can come from a
model's general knowledge; each question names the document and a phrase that only the
chunk answering it holds (chunks are cut at 240 characters in these tests).
"""

from __future__ import annotations

from loadtests._hostile_docs import pdf

DOCUMENTS: dict[str, str] = {
    "Harbor Lighthouse": (
        "The Kestrel Point lighthouse was lit for the first time in 1874. Its lamp burned "
        "whale oil until 1911, when the keepers switched to kerosene.\n\n"
        "The tower is 41 metres tall and painted in red and white bands. Visitors climb "
        "212 steps to the gallery, which is open from May to September.\n\n"
        "The last resident keeper, Ottilie Brand, left in 1968 when the light was automated."
    ),
    "Orchard Cooperative": (
        "The Fennwick orchard cooperative grows eleven varieties of apple on 90 hectares. "
        "Its best seller is the Amber Pippin, a late apple picked in October.\n\n"
        "Members meet on the first Tuesday of every month in the old cider barn. Cider "
        "pressing starts each year on the second weekend of October.\n\n"
        "The cooperative was founded in 1952 by fourteen families from the valley."
    ),
    "Tram Network": (
        "The Lindqvist tram network has four lines and 63 stops. Line 3 is the longest, "
        "running 19 kilometres from the harbour to the university.\n\n"
        "Trams run every six minutes at rush hour and every fifteen minutes after 22:00. "
        "A single ticket costs 2.40 and is valid for ninety minutes.\n\n"
        "The depot at Marsh Lane houses 48 trams and the maintenance workshop."
    ),
    "Glacier Survey": (
        "The Vatnajaru glacier has retreated 1.2 kilometres since the survey began in "
        "1990. Measurements are taken every August with GPS stakes.\n\n"
        "The survey team uses a ground-penetrating radar to measure ice thickness, which "
        "reaches 380 metres at the centre of the glacier.\n\n"
        "Meltwater from the glacier feeds the Skarda river and two hydroelectric dams."
    ),
    "Chess Club Rules": (
        "Club tournaments at the Rookery chess club use a time control of ninety minutes "
        "plus thirty seconds per move.\n\n"
        "A player who arrives more than thirty minutes late forfeits the game. Mobile "
        "phones must be switched off and left in the cloakroom.\n\n"
        "The club championship is decided by a nine-round Swiss tournament every spring."
    ),
}

#: question -> (document title, a phrase the answering chunk holds)
QUESTIONS: dict[str, tuple[str, str]] = {
    "How many steps do visitors climb in the lighthouse?": ("Harbor Lighthouse", "212 steps"),
    "When did the lighthouse keepers switch to kerosene?": ("Harbor Lighthouse", "kerosene"),
    "Who was the last resident keeper of the lighthouse?": ("Harbor Lighthouse", "Ottilie"),
    "Which apple variety is the cooperative's best seller?": ("Orchard Cooperative", "Amber"),
    "When does cider pressing start?": ("Orchard Cooperative", "Cider pressing"),
    "How often do trams run at rush hour?": ("Tram Network", "every six minutes"),
    "How much does a single tram ticket cost?": ("Tram Network", "2.40"),
    "How thick is the glacier ice at its centre?": ("Glacier Survey", "380 metres"),
    "What is the time control of club tournaments?": ("Chess Club Rules", "ninety minutes"),
    "What happens to a chess player who arrives late?": ("Chess Club Rules", "forfeits"),
}

def make_pdf(text: str) -> bytes:
    """A one-page PDF with ``text`` in Helvetica (written by hand: no PDF writer needed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return pdf(objects)
