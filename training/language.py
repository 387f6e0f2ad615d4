"""Which language and script a chat reply is in: Darija in Arabic script, Darija in Latin
letters (Arabizi, French words welcome), French or English.

A small, explainable detector for scoring replies (`dziri eval --task chat`): Arabic script
is told by its letters; Latin text by marker words of each language and by Arabizi's digits
inside words (3lach, 7aja, 9albi). Quoted text («…», "…") is left out, so that a
translation framed in the user's own language ("b lfransi nqoulou « je suis fatigué »")
counts as that language. tests/training/test_language.py checks it on the project's own
replies.
"""

from __future__ import annotations

import re

from dziri.core.search import fold  # the one folding: the eval matches words as search does

ARABIC, ARABIZI, FRENCH, ENGLISH, UNKNOWN = "arabic", "arabizi", "french", "english", "unknown"

_QUOTED = re.compile(r"«[^»]*»|“[^”]*”|\"[^\"]*\"")
_ARABIC_LETTER = re.compile(r"[\u0600-\u06FF\u0750-\u077F\uFB50-\uFDFF\uFE70-\uFEFF]")
_LATIN_LETTER = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿŒœ]")
_WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿŒœ0-9']+")
# A digit standing for an Arabic sound, inside a word: 3la, 7aja, 9bel, ma3labalich, s2al.
_ARABIZI_DIGITS = re.compile(r"(?=.*[a-z])[a-z]*[2356789][a-z0-9]*", re.IGNORECASE)

# Words that are common in one language and rare in the others (Darija's "la", "ma" and
# "kima" would collide with French or English and are left out).
_DARIJA = set("""
wach wech wesh wash kifach kifech kifah 3lach alach win wayn chhal chhal ch7al chkoun chkon wa9tach waqtach mnin
rani rak raki rah rahi raho rana rakom rakoum rahom ana nta nti ntouma ntoma hna houma homa hiya huwa howa
kayen kayn kayna makach makanch makach machi mechi walou walo walah wallah wellah inchallah nchallah hamdoullah
hamdoulah hamdulah hamdullah l7amdoullah bezzaf bzaf bezaf chwiya chwia chwaya ghir gher bessah bsah bsa7 ya3ni
yaani ya3ne daba drk dork dorka doka lyoum lyom ghedwa ghodwa lbare7 lbareh sbah sba7 l3chiya bark barka khlas
khouya khoya kho khti khtii sahbi sa7bi yemma yema baba jdi jedda mlih mli7 mli7a mliha s7i7 shih zwin zwina
chaba chbab ndir dir dirha ndirou nroh rouh roh nji ji tji jit nchouf chouf chof nakol kol nechrob echrob nqoul
nqoulek ngoulek goul qoul 9oul qolli golli nhab n7eb t7eb thab hab 7ab nheb nebghi bghit t9der n9der nqder
lazem lazm lazmek ykhalik khalli khali khalik hadi hada hadak hadik hadou hadouk hak haka hakda hakka kifkif
kima kifma ki bach bech besh ta3 ta3i ta3ek ta3na nta3 dyal 3and 3andi 3andek 3endi m3a m3ak m3aya fih fiha
fihom 3lih 3liha 3lik 3liya 3lihom lih liha lik liya lihom tani zid zidi ba3d 9bel qbel 9bal gba wala wla walla
ida ila kach kayen ghaya sa7a saha sahit saha3idek yatik ya3tik marhba mar7ba ahlan slm salam rabi rebbi
labas lbas hamdlh chokran saha ftourek bled blad dar dyar drahem dra7em dourou swaleh 7aja haja 7wayej hwayej
f w l b wela wella welli elli li ghaleb bih biha bihom kamel kamla ga3 gaa nass nas chi mazal mazel hnaya temma
tema yji ydir tdir tdirou ndirou dirou ykoun tkoun nkoun kount kanet rahou khir khdma khedma lkhedma drari wlad
bnat mra rajel radjel 3ayla l3id s3ib sahel ghali rkhis soum swa bzzaf kbir sghir jdid 9dim mlih tfadel tfaddal
sma7li smahli sam7ni nsit ma3lich ma3lish hakdak bedlou beddel khouti yak yaw ya wah ih iyeh ah ewa hadchi
""".split())
_FRENCH = set("""
le les des du une est et je tu il elle nous vous ils elles pour dans avec pas ne que qui c'est ce cette ces
mais sur au aux son ses mon mes ton tes très bien plus peux peut faut votre vos être avoir fait comme tout
bonjour merci oui non aussi alors donc parce quand comment pourquoi où quel quelle quels chez sans sous entre
leur leurs notre nos je suis tu es suis sont ont avez avons fais faire dire voir aller vais va vas vont
d'accord bonsoir salut s'il plaît j'ai c'était il y a peu beaucoup trop encore déjà toujours jamais rien
""".split())
_ENGLISH = set("""
the is are you your and to of in it that this for with what how i my me can do don't does be have has a an on
at not it's i'm there they we will would please hello hi thanks thank yes no if so but or from about which who
was were been just like get go know want need should could also some any more very good here when where why
""".split())
# "a", "je", "la"... are counted; but one-letter French/English words are too ambiguous alone.


def detect(text: str) -> str:
    """arabic | arabizi | french | english | unknown, for the unquoted part of `text`."""
    unquoted = _QUOTED.sub(" ", text)
    if not unquoted.strip():
        unquoted = text  # all of it is a quotation: judge the quotation
    arabic = len(_ARABIC_LETTER.findall(unquoted))
    latin = len(_LATIN_LETTER.findall(unquoted))
    if arabic == 0 and latin == 0:
        return UNKNOWN
    if arabic >= latin:
        return ARABIC
    scores = latin_scores(unquoted)
    best = max(scores, key=scores.get)
    if scores[best] == 0:
        return UNKNOWN
    if list(scores.values()).count(scores[best]) > 1:
        return ARABIZI if scores[ARABIZI] == scores[best] else UNKNOWN
    return best


def latin_scores(text: str) -> dict[str, int]:
    """Marker words of each Latin-script language in `text` (a word with Arabizi digits
    counts for Darija)."""
    scores = {ARABIZI: 0, FRENCH: 0, ENGLISH: 0}
    for raw in _WORD.findall(text):
        word = raw.lower()
        if word.isdigit():
            continue
        if word in _DARIJA or _ARABIZI_DIGITS.fullmatch(word):
            scores[ARABIZI] += 1
        plain = fold(word)
        if word in _FRENCH or plain in _FRENCH or word.startswith(("l'", "d'", "j'", "qu'", "n'", "s'", "c'")):
            scores[FRENCH] += 1
        if word in _ENGLISH:
            scores[ENGLISH] += 1
    return scores
