"""The dialogue step: a message read against the conversation so far, before routing.

Pure: from the folded state (the current topic, the open offer), the message, the entities it
names or refers to, and the local classifier's prediction, it decides one of

    confirm     "yes please" to the open offer: run the offered action (still behind every gate)
    decline     "no thanks" to the open offer: close it, change nothing
    thanks      "thanks!" / "bye": a courteous reply, nothing else
    correction  "sorry, I meant the open one": the topic's skill again, with the corrected entity
    follow_up   "how long does it take?", "and the other one?": the topic continues, its entities
                carried over (a new entity of the same kind replaces the old one)
    (none)      a new topic, or nothing to resolve: the routing cascade decides

and why. The words alone never decide: a message the classifier confidently places in another
department is a new topic, whatever it starts with; a follow-up needs a topic to follow, a
confirmation an offer still open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

from deskline.agents.registry import Registry, Skill
from deskline.handoffs.payload import HUMAN, OTHER, Entities, Offer, Topic
from deskline.handoffs.plan import Plan, PlanStep, StageVerdict
from deskline.hierarchy.plan import validate

Act = Literal["confirm", "decline", "thanks", "correction", "follow_up"]

CONFIDENT = 0.75  # a prediction this sure of another department is a new topic
SURE = 0.97  # ... this sure, when the message points back at the topic with "it", "that", "one"
SHORT = 12  # words: longer messages are read as new requests, not follow-ups

_CJK_END = r"$|[，。！!,.？?\s]|请|吧|啊|呀|谢谢|麻烦|就"  # a Chinese "yes" is a whole word: 好 is not 好像
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_CONFIRM = re.compile(
    r"^(?:(?:oh\s+)?(?:yes|yeah|yep|yup|ya|sure|ok(?:ay)?|alright|please(?:\s+do)?|go\s+ahead|do\s+it|do\s+that"
    r"|sounds\s+good|that\s+would\s+be\s+(?:great|nice|good)|absolutely|of\s+course|definitely|great|perfect"
    r"|i\s+(?:do|would|accept)|let'?s\s+do\s+(?:it|that)|y"
    r"|s[ií]|claro|dale|vale|de\s+acuerdo|por\s+favor|adelante|hazlo|h[aá]galo|perfecto|est[aá]\s+bien|bueno)\b)"
    rf"|^(?:好的|好啊|好吧|好呀|好|可以|行|是的|对的|对|嗯+|没问题|确认|麻烦(?:你|您)了|请办理)"
    rf"(?={_CJK_END})", re.IGNORECASE)
_DECLINE = re.compile(
    r"^(?:no|nope|nah|not\s+now|not\s+yet|no\s+thanks?|no\s+thank\s+you|don'?t|do\s+not|never\s*mind|leave\s+it"
    r"|cancel\s+that|that'?s\s+(?:ok|okay|fine)|it'?s\s+(?:ok|okay|fine)|i'?m\s+(?:ok|good|fine)"
    r"|ahora\s+no|todav[ií]a\s+no|d[eé]jalo|olv[ií]dalo|mejor\s+no|as[ií]\s+est[aá]\s+bien|no\s+hace\s+falta)\b"
    r"|^(?:不用|不要|不了|算了|先不|暂时不|不需要|没事|不必|别)", re.IGNORECASE)
_BARE = re.compile(r"(?:yes|yeah|yep|yup|sure|ok(?:ay)?|please\s+do|go\s+ahead|do\s+it|yes\s+please|sure\s+thing"
                   r"|please|no|nope|nah|no\s+thanks?|no\s+thank\s+you|s[ií]|claro|vale|s[ií],?\s+por\s+favor"
                   r"|no,?\s+gracias|好的|好|可以|行|嗯+|是的|不用|不要|不了)\W*(?:please|thanks?|gracias|谢谢)?\W*",
                   re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:no|not|don'?t|never|nope|nunca|tampoco)\b|不|没|别", re.IGNORECASE)
_THANKS = re.compile(r"\b(?:thanks?|thank\s+you|thx|ty|cheers|appreciated?|much\s+obliged|gracias|te\s+lo\s+agradezco"
                     r"|se\s+lo\s+agradezco)\b|谢谢|多谢|感谢|谢了|谢啦", re.IGNORECASE)
_BYE = re.compile(r"^(?:bye|goodbye|good\s*bye|see\s+you|that'?s\s+(?:all|it|everything)|nothing\s+else"
                  r"|have\s+a\s+(?:good|nice|great)\s+(?:day|one|evening)"
                  r"|adi[oó]s|hasta\s+luego|hasta\s+pronto|chao|chau|eso\s+es\s+todo|nada\s+m[aá]s)\b"
                  r"|^(?:再见|拜拜|拜|就这样|没有了|没别的|没其他)", re.IGNORECASE)
_CORRECTION = re.compile(
    r"\b(?:i\s+meant|i\s+mean|meant\s+to\s+say|not\s+that\s+one|wrong\s+(?:one|number|id)|that'?s\s+not\s+(?:it|the\s+one)"
    r"|correction|i\s+made\s+a\s+mistake|quise\s+decir|quer[ií]a\s+decir|me\s+equivoqu[eé]|no\s+es\s+es[ea])\b"
    r"|^(?:sorry|oops|actually|perd[oó]n|perdona|disculpa|en\s+realidad)\b|我是说|我的意思是|说错了|不是那个|搞错了|更正",
    re.IGNORECASE)
_FOLLOW_UP = re.compile(
    r"^(?:and|also|what\s+about|how\s+about|how\s+long|how\s+much|how\s+come|when|why|where|which|is\s+it|was\s+it"
    r"|did\s+it|has\s+it|will\s+it|can\s+you|could\s+you|any\s+(?:update|news)|still|so|then|ok(?:ay)?\s+(?:and|but|so)"
    r"|but|what\s+(?:is|was|does|if)|y|tambi[eé]n|qu[eé]\s+tal|cu[aá]nto|cu[aá]ndo|por\s+qu[eé]|d[oó]nde|cu[aá]l"
    r"|sigue|entonces|pero)\b|\b(?:it|that|this|them|the\s+other\s+one|that\s+one|this\s+one|eso|esa|ese|esto"
    r"|la\s+otra|el\s+otro)\b|^(?:那|还有|那么|然后|另外|什么时候|为什么|多久|怎么)|它|这个|那个|另一个|这笔|那笔",
    re.IGNORECASE)
_DIDNT_WORK = re.compile(
    r"\b(?:didn'?t|did\s+not|haven'?t|have\s+not|hasn'?t|has\s+not|never|not|doesn'?t|does\s+not)\s+"
    r"(?:get|got|receive|received|arrive|arrived|come|came|work|worked|go\s+through|gone\s+through|show\s+up)\b"
    r"|\bstill\s+(?:locked|blocked|not|no|nothing|waiting|pending|failing)\b|\b(?:try|do)\s+(?:it|that)\s+again\b"
    r"|\bno\s+(?:me\s+)?(?:ha\s+)?(?:lleg[oó]|llegado|funcion[oó]|funciona|recib[ií])\b|\bsigue\s+(?:bloquead|sin|pendiente)"
    r"|\b(?:otra\s+vez|de\s+nuevo)\b|没(?:有)?(?:收到|到账|成功|用)|还是(?:不行|没|锁|登不)|再(?:试|来|发)一(?:次|遍)|又失败",
    re.IGNORECASE)
_QUESTION = re.compile(r"^(?:why|when|how|what|where|which|who|whose|is|was|are|were|did|does|do|has|have|had"
                       r"|por\s+qu[eé]|cu[aá]ndo|c[oó]mo|qu[eé]|d[oó]nde|cu[aá]l|qui[eé]n)\b|^¿"
                       r"|[?？]\s*$|[吗呢]\s*$|^(?:为什么|什么时候|怎么|哪|谁|是不是|有没有)", re.IGNORECASE)
_REQUEST = re.compile(r"\b(?:can|could|would|will)\s+you\b|\bplease\b|^(?:do|go)\s+ahead\b"
                      r"|\b(?:puedes|podr[ií]as|puede|podr[ií]a)\b|\bpor\s+favor\b|请|帮我|麻烦|能不能|可不可以|可以帮",
                      re.IGNORECASE)
_BACK = re.compile(r"\b(?:it|its|it'?s|that|this|them|they|one|ones|the\s+same|eso|esa|ese|esto|esta|este"
                   r"|lo\s+mismo)\b|它|这个|那个|这笔|那笔|同一个", re.IGNORECASE)
_OTHER_ONE = re.compile(r"\b(?:the\s+other\s+one|the\s+other|another\s+one|the\s+second\s+one|la\s+otra|el\s+otro"
                       r"|la\s+segunda|el\s+segundo)\b|另一个|另外一个|另一笔|第二个|第二笔", re.IGNORECASE)


class Prediction(Protocol):
    department: str
    intent: str
    confidence: float
    abstain: bool


@dataclass(frozen=True, slots=True)
class Move:
    """What the dialogue step resolved: a skill to run with entities, or a reply on its own."""

    act: Act
    reason: str
    skill: str | None = None
    entities: Entities = field(default_factory=Entities)
    reply: str = ""  # a reply needing no skill (thanks, decline)
    closes_offer: bool = False


def asks_only(text: str) -> bool:
    """A question ("why is it locked?", "what happened to PAY-3002?") rather than a request to
    act ("can you retry it?", "please unlock it"): it gets an answer, never an action."""
    return _QUESTION.search(text.strip()) is not None and not _REQUEST.search(text)


def worth_reading(topic: Topic | None, offer: Offer | None, text: str) -> bool:
    """Whether the step can resolve anything: a topic or an offer to read against, or courtesies."""
    return topic is not None or offer is not None or bool(_THANKS.search(text) or _BYE.search(text.strip()))


def plan_for(move: Move, department: str, registry: Registry, prediction: Prediction) -> Plan:
    """The move as a plan: one step of the resolved skill, or a reply with no step (``clarify``)."""
    verdict = StageVerdict(stage="dialogue", department=department, intent=move.act, confidence=1.0,
                           accepted=True, reason=move.reason)
    classified = StageVerdict(stage="classifier", department=prediction.department, intent=prediction.intent,
                              confidence=prediction.confidence,
                              reason=f"{prediction.department} at {prediction.confidence:.2f}: read with the conversation")
    common = {"department": department, "intent": prediction.intent if move.act == "follow_up" else move.act,
              "confidence": 1.0, "stage": "dialogue", "verdicts": (classified, verdict), "reason": move.reason}
    if move.skill is None:
        return Plan(mode="clarify", **common)
    skill = registry[move.skill]
    return validate(Plan(mode="single", steps=(PlanStep(step_id="s1", agent=skill.agent, skill=skill.name),),
                         **common), registry)


def words(text: str) -> int:
    """Words in ``text``; Chinese, written without spaces, counts two characters a word."""
    han = len(_HAN.findall(text))
    return len(_HAN.sub(" ", text).split()) + (han + 1) // 2


def step(*, topic: Topic | None, offer: Offer | None, turn: int, text: str, named: Entities,
         referred: Entities, prediction: Prediction, registry: Registry, agent_for: dict[str, str],
         thanks: str, goodbye: str, declined: str, unclear: str) -> Move | None:
    """The dialogue move for this message, or None for the routing cascade (see the module doc)."""
    clean = text.strip()
    open_offer = offer if offer is not None and offer.open_at(turn) and offer.skill in registry else None
    refers_back = _BACK.search(clean) is not None and named.is_empty()
    elsewhere = _confident_elsewhere(prediction, topic, agent_for, refers_back)
    correcting = _CORRECTION.search(clean) is not None
    short = words(clean) <= SHORT
    if open_offer is not None and short and not elsewhere and not correcting:
        if _DECLINE.search(clean):
            return Move("decline", f"the customer declined the offer to run {open_offer.skill}", reply=declined,
                        closes_offer=True)
        if _CONFIRM.search(clean) and not _NEGATION.search(clean):
            return Move("confirm", f"the customer accepted the offer of turn {open_offer.turn}: {open_offer.skill}",
                        skill=open_offer.skill, entities=open_offer.entities, closes_offer=True)
    asking = asks_only(clean)
    if open_offer is not None and not elsewhere and not correcting and not asking and not _DECLINE.search(clean):
        offered = registry[open_offer.skill]
        same = not prediction.abstain and agent_for.get(prediction.department) == offered.agent
        if registry.choose(offered.agent, prediction.intent if same else "", clean).name == open_offer.skill:
            return Move("confirm", f"the customer asked for what turn {open_offer.turn} offered: {open_offer.skill}",
                        skill=open_offer.skill, entities=named.merged(open_offer.entities), closes_offer=True)
    if words(clean) <= 8 and named.is_empty() and not elsewhere and not clean.endswith("?"):
        if _BYE.search(clean):
            return Move("thanks", "the customer is done", reply=goodbye)
        if _THANKS.search(clean):
            return Move("thanks", "the customer thanked the desk", reply=thanks)
    if open_offer is None and topic is not None and named.is_empty() and _BARE.fullmatch(clean):
        return Move("confirm", "a yes or no with no offer open: ask what the customer would like", reply=unclear)
    if topic is None or topic.skill not in registry or elsewhere or not short:
        return None
    fresh = named.merged(referred)
    if correcting:
        if fresh.is_empty():
            return None
        skill = _readable(registry, topic.skill, topic.agent, fresh)
        return Move("correction", f"the customer corrected the {_kinds(fresh)} of turn {topic.turn}",
                    skill=skill.name, entities=_replace(topic.entities, fresh))
    same_agent = not prediction.abstain and agent_for.get(prediction.department) == topic.agent
    again = _DIDNT_WORK.search(clean) is not None
    if not (_FOLLOW_UP.search(clean) or same_agent or again or (prediction.abstain and not fresh.is_empty())):
        return None
    if not _owned_by(registry, fresh, topic.agent):
        return None  # names something another agent looks after: a new topic
    entities = topic.entities.merged(fresh)  # what the customer names now comes first
    if _OTHER_ONE.search(clean) and fresh.is_empty():
        entities = _other_one(topic.entities)
    if again and fresh.is_empty():  # "I didn't get the email": the topic's step once more
        return Move("follow_up", f"turn {topic.turn}'s {topic.skill} did not do what the customer needed: again",
                    skill=topic.skill, entities=entities)
    skill = registry.choose(topic.agent, prediction.intent if same_agent else "", clean)
    claimed = same_agent and registry.by_intent(prediction.intent) is skill
    in_play = [n for n in entities.values if n in registry[topic.skill].params.model_fields]
    takes = any(n in skill.params.model_fields for n in entities.values)
    if skill.action and asking:
        skill = _readable(registry, topic.skill, topic.agent, entities)  # "why is it locked?" asks, it does not ask for
    elif claimed and not takes and not _BACK.search(clean):
        pass  # a new question to the same agent ("what's my balance?"): its own skill
    elif (skill.action and not same_agent and not takes) or (in_play and not takes) \
            or (skill.name == registry.defaults.get(topic.agent) and not claimed):
        skill = _readable(registry, topic.skill, topic.agent, entities)
    return Move("follow_up", f"a follow-up on turn {topic.turn}'s {topic.skill} ({topic.department})",
                skill=skill.name, entities=entities)


def _confident_elsewhere(p: Prediction, topic: Topic | None, agent_for: dict[str, str],
                         refers_back: bool = False) -> bool:
    """The classifier is sure this is about another department than the topic's (surer still when
    the message points back at the topic: "when will it arrive?")."""
    if p.abstain or p.department == OTHER or p.confidence < (SURE if refers_back and topic else CONFIDENT):
        return False
    if p.department == HUMAN:  # an explicit request for a person is the strategy's: this is a guess
        return topic is None
    return topic is None or agent_for.get(p.department) != topic.agent


def _readable(registry: Registry, skill_name: str, agent: str, entities: Entities) -> Skill:
    """The topic's skill when it only reads, else the agent's reading skill for these entities."""
    skill = registry[skill_name]
    if not skill.action:
        return skill
    for name in entities.values:
        found = registry.lookup_for(name, agent)
        if found is not None and not found.action:
            return found
    return registry[registry.defaults[agent]]


def _replace(old: Entities, new: Entities) -> Entities:
    """The topic's entities with each kind the customer named again replaced, not merged."""
    kept = {k: v for k, v in old.values.items() if k not in new.values}
    return Entities(values={**new.values, **kept})


def _other_one(entities: Entities) -> Entities:
    """The next value of each kind in play ("and the other one?" after two invoices)."""
    rotated = {k: (*v[1:], v[0]) if len(v) > 1 else v for k, v in entities.values.items()}
    return Entities(values=rotated)


def _owned_by(registry: Registry, entities: Entities, agent: str) -> bool:
    """Every id kind named is one the topic's agent takes (or nothing is named)."""
    return all(agent in registry.agents_taking(name) or not registry.agents_taking(name) for name in entities.values)


def _kinds(entities: Entities) -> str:
    return ", ".join(entities.values)
