// Default VM names: a random adjective-noun pair, readable and easy to type (`brisk-otter`).
import { randomInt } from "node:crypto";

const ADJECTIVES = [
  "amber",
  "bold",
  "brisk",
  "calm",
  "clever",
  "crisp",
  "dapper",
  "eager",
  "fancy",
  "fleet",
  "gentle",
  "glad",
  "happy",
  "hardy",
  "jolly",
  "keen",
  "lively",
  "lucky",
  "merry",
  "mellow",
  "nimble",
  "noble",
  "plucky",
  "proud",
  "quick",
  "quiet",
  "rapid",
  "rosy",
  "shiny",
  "sly",
  "snug",
  "spry",
  "stout",
  "sunny",
  "swift",
  "tidy",
  "vivid",
  "warm",
  "wise",
  "zesty",
];
const NOUNS = [
  "badger",
  "beaver",
  "bison",
  "crane",
  "dingo",
  "eagle",
  "ferret",
  "finch",
  "gecko",
  "heron",
  "ibis",
  "jackal",
  "koala",
  "lemur",
  "lynx",
  "marmot",
  "mole",
  "newt",
  "ocelot",
  "otter",
  "owl",
  "panda",
  "puffin",
  "quail",
  "raven",
  "robin",
  "seal",
  "shrew",
  "stoat",
  "tapir",
  "toucan",
  "turtle",
  "vole",
  "walrus",
  "wombat",
  "yak",
  "zebra",
  "falcon",
  "hare",
  "moose",
];

/** A name not in `taken`; after a few collisions a numeric suffix keeps it unique. */
export function generateName(taken: (name: string) => boolean): string {
  for (let attempt = 0; attempt < 20; attempt++) {
    const name = `${ADJECTIVES[randomInt(ADJECTIVES.length)]}-${NOUNS[randomInt(NOUNS.length)]}`;
    if (!taken(name)) return name;
  }
  for (let n = 2; ; n++) {
    const name = `${ADJECTIVES[randomInt(ADJECTIVES.length)]}-${NOUNS[randomInt(NOUNS.length)]}-${n}`;
    if (!taken(name)) return name;
  }
}
