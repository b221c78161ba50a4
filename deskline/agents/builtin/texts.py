"""The built-in desk's own words: what it says when no skill template speaks."""

from deskline.definition import Texts

ESCALATED = (
    "I'm passing you to a member of our support team now; they can see everything we've "
    "discussed, so you won't have to repeat yourself."
)
ASKED_FOR_PERSON = f"{ESCALATED} You asked to speak to a person."
FRAUD = f"{ESCALATED} Because this may involve fraud or a lost card, a specialist will handle it with priority."

TEXTS = Texts(
    greeting="Hello! I can help with signing in and the app, invoices and charges, and payments and transfers.",
    clarify=(
        "I want to make sure I send you to the right place. Is this about a technical problem "
        "(logging in, the app), a bill or a charge, or a payment or transfer?"
    ),
    out_of_scope=(
        "I'm the support assistant for your account: I can help with logging in and technical "
        "problems, invoices and charges, and payments and transfers. What can I help you with?"
    ),
    escalated=ESCALATED,
    chat_banner="deskline demo support desk — ask about logins, invoices or payments.",
)
