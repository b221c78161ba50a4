"""The built-in desk: an account-support desk for a small bank-like service, built on the public
API exactly as a team would build its own (``deskline.Desk``). It is the default desk.

Three agents (tech: sign-in and the app; billing: invoices, charges, refunds; payment:
transfers and failed payments), their skills over a demo system of record (``backend/``: in
memory or in the desk's database, seeded with one customer's stories), a router trained on
BANKING77, CLINC150 and our own examples (``router/``), and the desk's texts (``texts.py``).
"""

from deskline.agents.builtin.desk import desk

__all__ = ["desk"]
