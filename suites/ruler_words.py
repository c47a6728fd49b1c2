"""Word lists for RULER's generated keys and word lists (written for namm-bench).

RULER draws needle keys as ``adjective-noun`` pairs and the common-words task's words from the
``wonderwords`` lists; these lists play the same role without that dependency: plain lowercase
English words, no digits, none of them a word of the tasks' templates.
"""

from __future__ import annotations

ADJECTIVES = """
able acid aged airy alert alive ample angry apt arid ashy awake bald bare basic bent best big bitter
black bland blond blue blunt bold bony brave brief bright brisk broad brown bumpy busy calm candid
cheap chief chilly civil clean clear clever close cloudy coarse cold cool cosy crisp cruel curly
cute daily damp dark dear deep dense dim dizzy double dry dull dusty eager early easy elder empty
equal even exact faint fair false famous fancy fast fat fine firm first flat fond frail free fresh
full funny fuzzy giant glad gold good grand grave gray great green grim gross happy hard harsh
heavy hidden high hollow honest huge humble hungry icy idle inner iron jolly juicy keen kind large
late lazy lean left legal light little livid local lone long loose loud lovely low loyal lucky
mad major merry mild minor misty modern moist moral muddy narrow near neat new nice noble noisy
odd oily old olive open oval pale plain plump polite poor proud pure quick quiet rapid rare raw
ready real rich rigid ripe rough round royal rude rusty sad safe salty sandy scarce sharp shiny
short shy silent silky silly simple slim slow small smart smooth soft solid sour spare spicy
stale steep sticky stiff still stout strange strict strong sunny super sweet swift tall tame
tart tender thick thin tidy tight tiny tired tough true ugly upper urban vague vast velvet vivid
warm weak wet white whole wide wild windy wise witty wooden worn young zesty
""".split()

NOUNS = """
acorn actor adult anchor angle ankle apple apron arch arena arrow attic award badge badger bagel
baker ballet bamboo banana banjo barn barrel basket beach beaver bell bench berry bicycle bird
blanket blossom boat bonnet bottle bowl bracelet branch bread brick bridge broom brush bucket
buffalo bulb bunny butter button cabin cable cactus camel camera canal candle canoe canyon carpet
carrot castle cattle cave cedar cellar chair chalk cheese cherry chess chimney circle cliff clock
cloud clover coat cobra coconut coffee collar comet copper coral cotton cradle crane crayon creek
cricket crow crown cup curtain cushion daisy desert desk diamond dolphin donkey door dragon drum
duck eagle easel engine fabric falcon feather fence ferry fiddle finch flag flame flute forest
fossil fountain fox frog garden garlic gate gecko ginger glacier glove goat goose grape guitar
hammer harbor harp hat hazel helmet heron hill honey hook horse island ivory jacket jaguar jelly
jewel kettle kite koala ladder lagoon lamp lantern lemon leopard lily lizard lobster locket magnet
mango maple marble meadow melon mirror mitten monkey moose mountain mushroom needle nest noodle
oak oar ocean olive onion orange orchard otter owl paddle palace panda parrot peach peanut pearl
pebble pelican pencil pepper piano pigeon pillow pine planet plum pond poppy puppet quilt rabbit
radish raft raven ribbon river robin rocket saddle salmon sandal scarf shell shovel silk sled
snail sofa sparrow spider spoon squirrel stable statue stone stove swan table teapot tent thistle
tiger timber toast tomato torch tower tractor trumpet tulip turtle umbrella valley vase violin
wagon walnut walrus whale whistle willow window wolf yacht zebra
""".split()

VERBS = """
accept admire answer arrive bake balance bathe battle beg bless blink boil borrow bounce breathe
brush build bump calculate carry carve chase cheer chew clap climb collect comb cook copy crawl
cross dance deliver dig dive drag draw dream drift drop dry dust earn escape explore fetch fix
float fold gather glow grab greet guard guess hammer hang harvest hike hop hug hunt hurry jog
juggle jump kick knit knock laugh launch lift listen march mend melt mix nod obey paint pack
paddle peel pick plant play polish pour pray print pull pump push race rescue ride rinse roast
roll rub sail scrub search sew shake shave shine shop sing sketch skip slide smile sneeze spin
splash sprint squeeze stir stitch stretch swim swing tap taste tease thank throw tickle trace
travel trot tumble twist type unlock vanish visit wander wash wave weave whisper wink wrap yawn
""".split()

WORDS = tuple(dict.fromkeys(ADJECTIVES + NOUNS + VERBS))
"""Distinct single words for the common-words task, in a fixed order."""
