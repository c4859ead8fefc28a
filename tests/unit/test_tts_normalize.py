"""backend.pipelines.tts.normalize: written text -> the words a person says, per language (a table of cases)."""
from __future__ import annotations

import re

import pytest

from backend.pipelines.tts.normalize import hindi_cardinal, normalize

CASES = [
    # --- American English ---------------------------------------------------------------------------
    ("a", "It costs 1,234 dollars.", "It costs one thousand two hundred thirty-four dollars."),
    ("a", "About 1,000,000 people.", "About one million people."),
    ("a", "Pi is 3.14159.", "Pi is three point one four one five nine."),
    ("a", "It is -5 outside.", "It is minus five outside."),
    ("a", "That is $12.50 today.", "That is twelve dollars and fifty cents today."),
    ("a", "$1, $0.99 and $1,000,000", "one dollar, ninety-nine cents and one million dollars"),
    ("a", "$1.5 million and $3bn", "one point five million dollars and three billion dollars"),
    ("a", "€5, £3.20, ¥1000 and £1", "five euros, three pounds and twenty pence, one thousand yen and one pound"),
    ("a", "He came 1st, she came 23rd and I was 4th.", "He came first, she came twenty-third and I was fourth."),
    ("a", "Growth was 45% or 3.5 %.", "Growth was forty-five percent or three point five percent."),
    ("a", "at 3:45 pm, 15:30, 7:05, 10 a.m. or 12:00.",
     "at three forty-five pee em, fifteen thirty, seven oh five, ten ay em or twelve o'clock."),
    ("a", "Born 2024-03-15 or 03/15/2024.", "Born March fifteenth, twenty twenty-four or March fifteenth, twenty twenty-four."),
    ("a", "On March 15, 2024 and 4 July 1776.",
     "On March fifteenth, twenty twenty-four and the fourth of July seventeen seventy-six."),
    ("a", "In 1999, the 1990s, the '80s, since 2010.",
     "In nineteen ninety-nine, the nineteen nineties, the eighties, since twenty ten."),
    ("a", "It weighs 5 kg, is 3.5 km long; 1 km; 20 °C; 100 km/h; 512 MB.",
     "It weighs five kilograms, is three point five kilometers long; one kilometer; twenty degrees Celsius; "
     "one hundred kilometers per hour; five hundred twelve megabytes."),
    ("a", "Dr. Smith lives on Elm St. near St. Louis.", "Doctor Smith lives on Elm Street near Saint Louis."),
    ("a", "Mr. and Mrs. Jones vs. Ms. Lee, etc. Then we left.",
     "Mister and Missus Jones versus Miz Lee, et cetera. Then we left."),
    ("a", "Visit https://www.example.com/docs/page2 today.",
     "Visit double you double you double you dot example dot com slash docs slash page two today."),
    ("a", "See github.io.", "See github dot eye oh."),
    ("a", "Mail john.doe+tts@mail.example.co.uk now.",
     "Mail john dot doe plus tee tee ess at mail dot example dot co dot you kay now."),
    ("a", "Call 555-123-4567 now.", "Call five five five, one two three, four five six seven now."),
    ("a", "Pages 10-20, 2 x 3 = 6 and 1 + 1 = 2.",
     "Pages ten to twenty, two times three equals six and one plus one equals two."),
    ("a", "Agent 007, 3x faster, #5, No. 7.", "Agent zero zero seven, three times faster, number five, number seven."),
    ("a", "It's 5°.", "It's five degrees."),
    ("a", "Salt & pepper.", "Salt and pepper."),
    ("a", "From 2020-2021 and 1939–1945.", "From twenty twenty to twenty twenty-one and nineteen thirty-nine to nineteen forty-five."),
    ("a", "COVID-19, v2.0, mp3, A4 paper.", "COVID-nineteen, v two point zero, mp three, A four paper."),
    # --- British English: "and" in numbers, day before month, metres --------------------------------------
    ("b", "It costs 1,234 pounds.", "It costs one thousand two hundred and thirty-four pounds."),
    ("b", "On 03/04/2024, 5 km.", "On the third of April twenty twenty-four, five kilometres."),
    # --- Spanish ----------------------------------------------------------------------------------------
    ("e", "Cuesta 1.234,56 euros y 3,5 kg.",
     "Cuesta mil doscientos treinta y cuatro coma cincuenta y seis euros y tres coma cinco kilogramos."),
    ("e", "Son 12,50 € o $20 o 5€.", "Son doce euros con cincuenta céntimos o veinte dólares o cinco euros."),
    ("e", "El 1º y la 2ª, el 45 % y 3,14.", "El primero y la segunda, el cuarenta y cinco por ciento y tres coma catorce."),
    ("e", "A las 15:30 o a la 1:00, el 2024-03-15.",
     "A las quince y treinta o a la una en punto, el quince de marzo de dos mil veinticuatro."),
    ("e", "La Dra. López, etc.", "La doctora López, etcétera."),
    ("e", "Escribe a ana@correo.es.", "Escribe a ana arroba correo punto E S."),
    # --- French -------------------------------------------------------------------------------------------
    ("f", "Il coûte 1 234,56 € et 3,5 km.",
     "Il coûte mille deux cent trente-quatre euros et cinquante-six centimes et trois virgule cinq kilomètres."),
    ("f", "Le 1er et la 1re, le 2e, 45 %.", "Le premier et la première, le deuxième, quarante-cinq pour cent."),
    ("f", "À 15h30 ou 8:05, le 15/03/2024.",
     "À quinze heures trente ou huit heures cinq, le quinze mars deux mille vingt-quatre."),
    ("f", "M. Dupont et Mme Durand, etc.", "Monsieur Dupont et Madame Durand, et cetera."),
    # --- Italian ------------------------------------------------------------------------------------------
    ("i", "Costa 1.234,56 € e 3,5 km, il 1º e la 2ª, 45%.",
     "Costa milleduecentotrentaquattro euro e cinquantasei centesimi e tre virgola cinque chilometri, il primo e "
     "la seconda, quarantacinque per cento."),
    ("i", "Alle 15:30, il 15/03/2024, Sig. Rossi e Dott.ssa Bianchi ecc.",
     "Alle quindici e trenta, il quindici marzo duemilaventiquattro, signor Rossi e dottoressa Bianchi eccetera."),
    # --- Brazilian Portuguese -----------------------------------------------------------------------------
    ("p", "Custa R$ 1.234,56 e 3,5 km, o 1º e a 2ª, 45%.",
     "Custa mil duzentos e trinta e quatro reais e cinquenta e seis centavos e três vírgula cinco quilômetros, "
     "o primeiro e a segunda, quarenta e cinco por cento."),
    ("p", "Às 15:30, em 15/03/2024, a Dra. Souza.",
     "Às quinze e trinta, em quinze de março de dois mil e vinte e quatro, a doutora Souza."),
    # --- Hindi (its own speller: num2words 0.5.14 has none) ------------------------------------------------
    ("h", "कीमत ₹1,50,000 और 45% है।", "कीमत एक लाख पचास हज़ार रुपये और पैंतालीस प्रतिशत है।"),
    ("h", "3.5 km और 125 लोग", "तीन दशमलव पाँच किलोमीटर और एक सौ पच्चीस लोग"),
]


@pytest.mark.parametrize("code, text, expected", CASES, ids=[f"{c}:{t[:30]}" for c, t, _ in CASES])
def test_written_forms_become_spoken_words(code, text, expected) -> None:
    assert normalize(text, code) == expected


@pytest.mark.parametrize("code", ["a", "b", "e", "f", "i", "p", "h"])
def test_no_digit_or_currency_sign_reaches_the_phonemiser(code) -> None:
    """The phonemiser's own number reading is never relied on: every case leaves words only."""
    for _, text, _ in CASES:
        spoken = normalize(text, code)
        assert not re.search(r"[0-9$€£¥₹%]", spoken), (code, text, spoken)


def test_plain_text_is_left_alone() -> None:
    text = "The quick brown fox jumps over the lazy dog. Is it? Yes!"
    assert normalize(text, "a") == text


def test_long_digit_runs_are_read_digit_by_digit() -> None:
    assert normalize("Card 1234567890123456.", "a") == "Card " + " ".join(
        "one two three four five six seven eight nine zero one two three four five six".split()) + "."


@pytest.mark.parametrize("number, words", [(0, "शून्य"), (19, "उन्नीस"), (99, "निन्यानबे"), (100, "एक सौ"),
                                           (1999, "एक हज़ार नौ सौ निन्यानबे"),
                                           (12_34_56_789, "बारह करोड़ चौंतीस लाख छप्पन हज़ार सात सौ नवासी")])
def test_hindi_numbers_use_indian_grouping(number, words) -> None:
    assert hindi_cardinal(number) == words
