// The 64 emoji of the Matrix SAS verification list, with their English, Dutch and
// Swedish names, for the E2EE verification code (docs/e2ee-design.md §7).
// Index i is the 6-bit value i.
//
// From matrix-org/matrix-spec data-definitions/sas-emoji.json (commit
// d0ba2aaef801e0134a4e5c6054a2c2f41bb55531). Copyright The Matrix.org Foundation
// C.I.C., licensed under the Apache License, Version 2.0
// (https://www.apache.org/licenses/LICENSE-2.0; a copy is in sas-emoji.LICENSE).
// Changes: only the en/nl/sv names
// were kept, as [emoji, en, nl, sv] rows.
export const SAS_EMOJI = [
  ["🐶", "Dog", "Hond", "Hund"],
  ["🐱", "Cat", "Kat", "Katt"],
  ["🦁", "Lion", "Leeuw", "Lejon"],
  ["🐎", "Horse", "Paard", "Häst"],
  ["🦄", "Unicorn", "Eenhoorn", "Enhörning"],
  ["🐷", "Pig", "Varken", "Gris"],
  ["🐘", "Elephant", "Olifant", "Elefant"],
  ["🐰", "Rabbit", "Konijn", "Kanin"],
  ["🐼", "Panda", "Panda", "Panda"],
  ["🐓", "Rooster", "Haan", "Tupp"],
  ["🐧", "Penguin", "Pinguïn", "Pingvin"],
  ["🐢", "Turtle", "Schildpad", "Sköldpadda"],
  ["🐟", "Fish", "Vis", "Fisk"],
  ["🐙", "Octopus", "Octopus", "Bläckfisk"],
  ["🦋", "Butterfly", "Vlinder", "Fjäril"],
  ["🌷", "Flower", "Bloem", "Blomma"],
  ["🌳", "Tree", "Boom", "Träd"],
  ["🌵", "Cactus", "Cactus", "Kaktus"],
  ["🍄", "Mushroom", "Paddenstoel", "Svamp"],
  ["🌏", "Globe", "Wereldbol", "Jordklot"],
  ["🌙", "Moon", "Maan", "Måne"],
  ["☁️", "Cloud", "Wolk", "Moln"],
  ["🔥", "Fire", "Vuur", "Eld"],
  ["🍌", "Banana", "Banaan", "Banan"],
  ["🍎", "Apple", "Appel", "Äpple"],
  ["🍓", "Strawberry", "Aardbei", "Jordgubbe"],
  ["🌽", "Corn", "Maïs", "Majs"],
  ["🍕", "Pizza", "Pizza", "Pizza"],
  ["🎂", "Cake", "Taart", "Tårta"],
  ["❤️", "Heart", "Hart", "Hjärta"],
  ["😀", "Smiley", "Smiley", "Smiley"],
  ["🤖", "Robot", "Robot", "Robot"],
  ["🎩", "Hat", "Hoed", "Hatt"],
  ["👓", "Glasses", "Bril", "Glasögon"],
  ["🔧", "Spanner", "Moersleutel", "Skruvnyckel"],
  ["🎅", "Santa", "Kerstman", "Tomte"],
  ["👍", "Thumbs Up", "Duim omhoog", "Tummen upp"],
  ["☂️", "Umbrella", "Paraplu", "Paraply"],
  ["⌛", "Hourglass", "Zandloper", "Timglas"],
  ["⏰", "Clock", "Wekker", "Klocka"],
  ["🎁", "Gift", "Geschenk", "Present"],
  ["💡", "Light Bulb", "Gloeilamp", "Lampa"],
  ["📕", "Book", "Boek", "Bok"],
  ["✏️", "Pencil", "Potlood", "Penna"],
  ["📎", "Paperclip", "Papierklemmetje", "Gem"],
  ["✂️", "Scissors", "Schaar", "Sax"],
  ["🔒", "Lock", "Slot", "Lås"],
  ["🔑", "Key", "Sleutel", "Nyckel"],
  ["🔨", "Hammer", "Hamer", "Hammare"],
  ["☎️", "Telephone", "Telefoon", "Telefon"],
  ["🏁", "Flag", "Vlag", "Flagga"],
  ["🚂", "Train", "Trein", "Tåg"],
  ["🚲", "Bicycle", "Fiets", "Cykel"],
  ["✈️", "Aeroplane", "Vliegtuig", "Flygplan"],
  ["🚀", "Rocket", "Raket", "Raket"],
  ["🏆", "Trophy", "Trofee", "Trofé"],
  ["⚽", "Ball", "Bal", "Boll"],
  ["🎸", "Guitar", "Gitaar", "Gitarr"],
  ["🎺", "Trumpet", "Trompet", "Trumpet"],
  ["🔔", "Bell", "Bel", "Bjällra"],
  ["⚓", "Anchor", "Anker", "Ankare"],
  ["🎧", "Headphones", "Koptelefoon", "Hörlurar"],
  ["📁", "Folder", "Map", "Mapp"],
  ["📌", "Pin", "Duimspijker", "Häftstift"],
];

/** The name of emoji number i in lang ("en", "nl" or "sv"; English otherwise). */
export function emojiName(i, lang) {
  const row = SAS_EMOJI[i];
  return row[{ en: 1, nl: 2, sv: 3 }[lang] ?? 1];
}
