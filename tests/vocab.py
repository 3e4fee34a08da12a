"""A tiny BERT vocab.txt that tests write for themselves, so no test needs the hub or ../shared."""

from __future__ import annotations

import string
from pathlib import Path

SPECIALS = ("[PAD]", *(f"[unused{i}]" for i in range(1, 10)), "[UNK]", "[CLS]", "[SEP]", "[MASK]")
ENGLISH = "the ##s token ##izer ##ize bert ##ing data hello world cafe 2024".split()
CJK_PUNCTUATION = "，。！？、：；“”‘’（）《》【】…—·"
COMMON_CJK = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后"
    "小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长"
    "知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最"
    "间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市"
    "眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计"
    "或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让"
    "认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办"
    "运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持"
    "取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞"
    "观争究包组造落视济喜离虽坏兴尔门京汉字词句处理语言自然分析模型训练数据集北京天安门今天气很好朋友喜欢"
    "吃饭睡觉工作学习中文英文化汽车飞机火车手机电脑网络世界和平快乐生日新年春节"
)


def vocab_tokens() -> list[str]:
    """The vocab in id order: BERT specials, ASCII, English pieces, CJK chars (each also as ##)."""
    ascii_chars = string.ascii_lowercase + string.digits
    tokens = [*SPECIALS, *string.punctuation, *ascii_chars, *(f"##{c}" for c in ascii_chars), *ENGLISH]
    for char in CJK_PUNCTUATION + COMMON_CJK:
        tokens += [char, f"##{char}"]
    return list(dict.fromkeys(tokens))


def write_tiny_vocab(path: Path) -> Path:
    """Write the tiny vocab, one token a line; the same bytes on every call."""
    path.write_text("".join(f"{token}\n" for token in vocab_tokens()), encoding="utf-8")
    return path
