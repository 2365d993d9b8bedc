"""The guards' shared vocabulary: negation cues, contrasts, affixes, numbers and units.

Hand-written closed classes of English (function words, number words, units, opposite
affixes) and contrasts between the two ends of a scale or an exchange. Open-class knowledge
(antonyms, lemmas) comes from WordNet through `core.lexicon`.
"""

from __future__ import annotations

NEGATION_CUES = frozenset(
    "not no never nothing nobody none nowhere neither nor without cannot cant dont doesnt "
    "didnt isnt arent wasnt werent wont wouldnt shouldnt couldnt hasnt havent hadnt mustnt "
    "aint".split()
)

# Contrasts: each is a tuple of poles, each pole a set of words (or two-word phrases) that
# take the same side. A text "takes" every pole it mentions.
CONTRAST_POLES = (
    # what an operation does to a thing: bring it into being / switch it on, or the reverse
    "create,creating,created,install,installing,installed,enable,enabling,enabled,"
    "activate,activating,activated,insert,turn on,switch on,set up,sign up,subscribe"
    "|list all,list the,list every,list my,show,view,display,print out"
    "|delete,deleting,deleted,remove,removing,removed,uninstall,uninstalling,disable,"
    "disabling,disabled,deactivate,deactivating,erase,wipe,purge,destroy,turn off,"
    "switch off,get rid,get off,unsubscribe",
    "keep,keeping,kept,save,retain,preserve|discard,throw away,lose,losing,wipe,delete,"
    "deleting,remove,removing",
    "start,begin,resume,restart|pause,suspend|stop,terminate,quit",
    "ascending,increasing order,smallest to largest,lowest to highest"
    "|descending,decreasing order,largest to smallest,highest to lowest",
    "increase,raise,louder,faster,boost,higher,speed up,scale up,turn up"
    "|decrease,reduce,quieter,slower,lower,slow down,scale down,turn down,bring down,cut back",
    "upload,uploading|download,downloading",
    "import|export",
    "push|pull",
    "buy,buying,purchase|sell,selling",
    "deposit|withdraw,withdrawal",
    "send,sending,sent|receive,receiving,received",
    "encode|decode",
    "before|after",
    "first|last",
    "left|right",
    "upper,uppercase|lower,lowercase",
    "soft,runny|hard,firm",
    "hot|cold",
    "true,correct|false,incorrect,wrong",
    "positive|negative",
    "even|odd",
    "inner|outer",
    "public|private",
    "horizontal|vertical",
    "input|output",
    "incoming,inbound|outgoing,outbound",
    "best|worst",
    "better|worse",
    "largest,biggest|smallest",
    "accept,approve,allow,permit,grant,give|reject,decline,deny,block,disallow,forbid,prohibit,"
    "disable,revoke,take away",
    "include|exclude",
    "confirm|cancel",
    "derivative,differentiate|integral,integrate,antiderivative",
    "plus|minus,subtract",
    "multiply,multiplied|divide,divided",
    "login,log in,sign in|logout,log out,sign out",
    "open|close",
    "lock|unlock",
    "freeze|unfreeze,thaw,defrost",
    "male,males,man,men,boy,boys,masculine,husband,boyfriend,son,sons,brother,brothers,father,"
    "dad,uncle,nephew,grandfather,grandson"
    "|female,females,woman,women,girl,girls,feminine,wife,girlfriend,daughter,daughters,sister,"
    "sisters,mother,mom,mum,aunt,niece,grandmother,granddaughter",
    # the audience: its experience, and how much and how it is told
    "beginner,beginners,novice,novices,newbie,newbies,junior,introductory,entry level"
    "|expert,experts,advanced,senior,experienced,seasoned",
    "brief,briefly,short,concise,summary,in a nutshell,in a few words,tldr,high level,overview"
    "|detailed,in detail,in depth,thorough,thoroughly,comprehensive,comprehensively,at length,"
    "exhaustive,step by step,deep dive,great detail,great depth",
    "simple terms,plain language,plain english,layman,laymans,nontechnical,eli5"
    "|technical,rigorous,rigorously,mathematically,academic",
    "formal,professional,serious|informal,casual,playful,funny,humorous,lighthearted,jokey,silly",
    "cheap,cheapest,cheaper|expensive,priciest,pricier",
    # closed classes: every member is a pole of its own
    "monday|tuesday|wednesday|thursday|friday|saturday|sunday",
    "spring|summer|autumn|winter",
    "morning|afternoon|evening|night",
    "yesterday|today|tomorrow",
    "hourly|daily|weekly|monthly|yearly,annually,annual",
    "per hour,an hour|per day,a day|per week,a week|per month,a month|per year,a year",
    "north,northern|south,southern|east,eastern|west,western",
    "minimum,min|average,mean|median|maximum,max",
    # ages of life, and languages a text may name in lower case ("in python", "to spanish")
    "baby,babies,infant,infants,newborn,newborns|child,children,kid,kids,toddler,toddlers"
    "|teen,teens,teenager,teenagers,adolescent,adolescents|adult,adults,grownup,grownups"
    "|elderly,retiree,retirees,pensioner,pensioners,senior citizen,senior citizens",
    "python|java|javascript|typescript|ruby|php|kotlin|scala|haskell|perl|golang|csharp|elixir"
    "|clojure|lua|fortran|cobol",
    "english|spanish|french|german|italian|portuguese|dutch|russian|polish|chinese,mandarin"
    "|cantonese|japanese|korean|arabic|hindi|turkish|greek|swedish|vietnamese|thai",
)
# Roles, ends of an exchange and kinds: a negation does not take a text to the other end
# ("without credit" is not "debit", "not remote" is not "local").
ROLE_POLES = (
    "donor,donors,giver,givers|recipient,recipients",
    "absorb,absorbing,absorbed,absorption|release,releasing,released,emit,emitting,emitted,"
    "emission,emissions",
    "lend,lending,lender,lenders,lent|borrow,borrowing,borrowed,borrower,borrowers",
    "buyer,buyers,purchaser,purchasers|seller,sellers,vendor,vendors",
    "landlord,landlords|tenant,tenants,renter,renters",
    "creditor,creditors|debtor,debtors",
    "credit|debit",
    "profit,profits,gain,gains|loss,losses",
    "asset,assets|liability,liabilities",
    "read access,read only,read permission,read from,reading from"
    "|write access,write permission,write to,writing to",
    "local|remote",
    "domestic|international",
    "single,unmarried|married",
    "before|during",
    "during|after",
    "weekday,weekdays|weekend,weekends",
    "development,dev|staging|production,prod",
    # the two sides of a relation between people or programs
    "teacher,teachers,instructor,instructors,tutor,tutors|student,students,pupil,pupils",
    "doctor,doctors,physician,physicians,nurse,nurses|patient,patients",
    "parent,parents|child,children,kid,kids",
    "host,hosts|guest,guests",
    "sender,senders|recipient,recipients,receiver,receivers",
    "producer,producers|consumer,consumers",
    "publisher,publishers|subscriber,subscribers",
    "client,clients|server,servers",
    "primary,master|replica,replicas,secondary,standby",
    "leader,leaders|follower,followers",
    "winner,winners|loser,losers",
    "predator,predators|prey",
    "source|destination,target",
    "ingress|egress",
)
CONTRASTS: tuple[tuple[frozenset[str], ...], ...] = tuple(
    tuple(frozenset(pole.split(",")) for pole in poles.split("|"))
    for poles in CONTRAST_POLES + ROLE_POLES
)

OPPOSITE_PREFIXES = ("un", "dis", "de", "anti", "non")
# Prefixes and suffixes that trade a word for its counterpart around the same stem:
# hypothyroidism / hyperthyroidism, upload / download, employer / employee, stateful / stateless.
PREFIX_PAIRS = (
    ("hyper", "hypo"),
    ("over", "under"),
    ("pre", "post"),
    ("in", "out"),
    ("in", "ex"),
    ("im", "ex"),
    ("intro", "extro"),
    ("up", "down"),
    ("on", "off"),
    ("inter", "intra"),
    ("max", "min"),
    ("micro", "macro"),
    ("sub", "super"),
    ("en", "de"),
    ("inc", "dec"),
    ("endo", "exo"),
    ("homo", "hetero"),
    ("mono", "poly"),
)
#: Verbs that keep something from happening when "from" and a verb follow ("stop the service
#: from starting", "keep the pipes from freezing", "protect the plants from freezing"): the
#: verb after "from" is what the request wants *not* to happen.
PREVENTION_VERBS = frozenset(
    "stop stops stopping prevent prevents preventing keep keeps keeping block blocks blocking "
    "ban bans bar bars protect protects protecting safeguard save shield guard discourage "
    "disable".split()
)
#: Words that make a request about avoiding or lessening an action without a "from" frame
#: ("avoid freezing", "so they do not freeze", "less often"): a text with one is not the
#: plain request to do it.
AVERTING_WORDS = PREVENTION_VERBS | frozenset(
    "avoid avoiding avert prevention proof less fewer reduce minimise minimize".split()
)
#: Verbs too light to name an action alone ("keep it from getting itchy", "from being late").
LIGHT_VERBS = frozenset("be get have do make go take become feel".split())
#: Verbs of putting things in an order: the order they take by default is ascending, so a
#: text that asks for descending order where the other, sorting the same, names none asks
#: for another answer ("sort a dict by value" / "... in descending order").
SORT_VERBS = frozenset(
    "sort sorts sorted sorting order ordered ordering rank ranks ranked ranking arrange "
    "arranged arranging".split()
)
#: Particles that turn a verb to its opposite ("turn the wifi on" / "... off", "turn it up" /
#: "turn it down"): one text has one, the other only its counterpart. Not "in" / "out":
#: "flew in from Chicago" / "flew out of Chicago", "cash in" / "cash out" points.
PARTICLE_PAIRS = (("on", "off"), ("up", "down"))
SUFFIX_PAIRS = (("er", "ee"), ("or", "ee"), ("ful", "less"))
AFFIX_STEM = 3  # letters the shared stem needs at least

# "one" is left out here: it is mostly a pronoun ("a new one"); `_counts_one` tells when it
# counts something ("in one sentence").
NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero _ two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
    if word != "_"
}
NUMBER_WORDS.update(
    {
        "thirty": "30",
        "forty": "40",
        "fifty": "50",
        "sixty": "60",
        "seventy": "70",
        "eighty": "80",
        "ninety": "90",
        "hundred": "100",
        "thousand": "1000",
        "million": "1000000",
        "billion": "1000000000",
        "dozen": "12",
        "half": "0.5",
        "twice": "2",
    }
)

# Ordinals count like their numbers ("third highest" / "3rd highest"); "second" only where it
# is one ("the second highest", not "wait a second"). "first" is left to `opposites`
# (first / last): "the first debate" is not a date.
ORDINALS = {
    word: str(value)
    for value, word in enumerate(
        "_ _ second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split()
    )
    if word != "_"
}
ORDINALS.update({"twentieth": "20", "hundredth": "100", "thousandth": "1000"})
AMBIGUOUS_ORDINALS = frozenset({"second"})
ORDINAL_AFTER = frozenset("the my your his her its our their".split())

# Units a number measures, by canonical name: "2 hrs" is "2 hours", "150 lbs" is not "150 kg".
UNITS = {
    alias: unit
    for unit, aliases in {
        "second": "second seconds sec secs",
        "minute": "minute minutes min mins",
        "hour": "hour hours hr hrs",
        "day": "day days",
        "week": "week weeks wk wks",
        "month": "month months",
        "year": "year years yr yrs",
        "decade": "decade decades",
        "century": "century centuries",
        "milligram": "milligram milligrams mg",
        "gram": "gram grams g",
        "kilogram": "kilogram kilograms kg kgs kilo kilos",
        "pound": "pound pounds lb lbs",
        "ounce": "ounce ounces oz",
        "ton": "ton tons tonne tonnes",
        "millimeter": "millimeter millimeters millimetre millimetres mm",
        "centimeter": "centimeter centimeters centimetre centimetres cm",
        "meter": "meter meters metre metres",
        "kilometer": "kilometer kilometers kilometre kilometres km kms",
        "inch": "inch inches",
        "foot": "foot feet ft",
        "yard": "yard yards",
        "mile": "mile miles mi",
        "milliliter": "milliliter milliliters millilitre millilitres ml",
        "liter": "liter liters litre litres",
        "cup": "cup cups",
        "tablespoon": "tablespoon tablespoons tbsp",
        "teaspoon": "teaspoon teaspoons tsp",
        "gallon": "gallon gallons gal",
        "byte": "byte bytes",
        "bit": "bit bits",
        "kilobyte": "kilobyte kilobytes kb",
        "megabyte": "megabyte megabytes mb",
        "gigabyte": "gigabyte gigabytes gb",
        "terabyte": "terabyte terabytes tb",
        "word": "word words",
        "sentence": "sentence sentences",
        "paragraph": "paragraph paragraphs",
        "page": "page pages",
        "line": "line lines",
        "dollar": "dollar dollars usd",
        "euro": "euro euros eur",
        "cent": "cent cents",
        "yen": "yen jpy",
        "percent": "percent percentage",
        "degree": "degree degrees",
        "celsius": "celsius",
        "fahrenheit": "fahrenheit",
        "calorie": "calorie calories kcal cal",
        "mph": "mph",
        "kph": "kph kmh",
        "hertz": "hertz hz",
        "gigahertz": "gigahertz ghz",
        "megahertz": "megahertz mhz",
        "watt": "watt watts",
        "kilowatt": "kilowatt kilowatts kw",
        "volt": "volt volts",
    }.items()
    for alias in aliases.split()
}

#: Words that say nothing about what is asked (also the lexical score's stop list).
FUNCTION_WORDS = frozenset(
    "a an the to of in on for is are am was were be been i im my me you your we our what how "
    "can could do does did please and or it its with at by this that these those from "
    "there here will would should shall may might must just about".split()
)

# Words before "one" that make it a pronoun, and words after it that do not make it a count.
ONE_AS_PRONOUN_AFTER = frozenset(
    "a the this that which each every any no another only new old right wrong same other last "
    "first next no-one someone anyone everyone".split()
)
NOT_AFTER_ONE = frozenset("another more else".split())

# Words that start questions or are capitalised for grammar, not because they name something.
NOT_NAMES = frozenset("i i'm i've i'd i'll ok okay".split())

ARTICLES = frozenset("a an the".split())
#: Words that open a noun phrase without naming anything: articles, possessives, demonstratives.
DETERMINERS = ARTICLES | frozenset("my your his her its our their this that these those".split())
#: Prepositions that mark where something goes (`from` marks where it comes from).
GOAL_MARKERS = frozenset("to into onto toward towards".split())
#: Words before a number that bound it from above ("under 18") or from below ("over 18").
BOUNDS = {
    **dict.fromkeys(
        (
            "under",
            "below",
            "less than",
            "fewer than",
            "at most",
            "up to",
            "no more than",
            "younger than",
            "lower than",
            "shorter than",
        ),
        "under",
    ),
    **dict.fromkeys(
        (
            "over",
            "above",
            "more than",
            "greater than",
            "at least",
            "no less than",
            "older than",
            "higher than",
            "longer than",
            "exceeding",
        ),
        "over",
    ),
}

#: Prepositions whose object says for whom, where, with what or about what the request is.
SLOT_PREPOSITIONS = frozenset(
    "to for in on with as of about at by from under over into onto without within among "
    "between against during like via using".split()
)
#: People a request can be for, by age, condition or household ("in an infant", "for an
#: elderly parent", "with a toddler", "for a family of five"): a text that aims the request
#: at one of them asks for another answer than a text that names no one of the kind. Not
#: the reader's level ("for beginners": `ANSWER_SHAPE_HINTS`).
AUDIENCES = frozenset(
    "baby babies infant infants newborn newborns child children kid kids toddler toddlers "
    "teen teens teenager teenagers adolescent adolescents adult adults grownup grownups "
    "elderly seniors retiree retirees pensioner pensioners pregnant pregnancy diabetic diabetics "
    "family families couple couples parent parents".split()
)
#: Prepositions that aim a request at an audience (not "as": "as a kid" is a time of life).
AUDIENCE_MARKERS = frozenset("for in to with among".split())
#: Words that open a qualifier added to a whole request: prepositions, conjunctions,
#: subordinators and relative pronouns ("... in R", "... and include X", "... if no digit
#: repeats", "... that allows dogs", "... excluding Earth").
QUALIFIER_OPENERS = SLOT_PREPOSITIONS | frozenset(
    "and or but only if when unless while whereas so that which who whose where except "
    "excluding including especially every each per".split()
)
#: Words a qualifier of politeness, urgency or emphasis is made of ("..., please", "... if
#: possible", "... at all", "... immediately"), and object pronouns that point back into the
#: request ("do my tires have enough air in them").
QUALIFIER_FILLERS = frozenset(
    "please thanks thank possible quick quickly asap now today again anyone someone help "
    "advance all ever really actually exactly easily simply properly correctly immediately "
    "them him us".split()
)
#: How an answer is to be shaped, by dimension: the reader's level, the length, the register
#: and the format. A text that sets a dimension the other does not even touch asks for
#: another answer ("summarize the plot" / "a detailed summary of the plot"). Phrases are
#: matched on the words (number words as digits); a count of a length unit sets the length
#: ("in 1 sentence", "a 1 page timeline", "in 500 words").
ANSWER_SHAPES: tuple[frozenset[str], ...] = tuple(
    frozenset(dimension.split(","))
    for dimension in (
        "eli5,layman,laymans,like im 5,year old,years old,year olds,yrs old,layperson,laypeople,"
        "nonexpert,nonexperts,someone who has never,somebody who has never,anyone who has never,"
        "people who have never,someone who knows nothing,someone with no background",
        "brief,briefly,concise,concisely,in a nutshell,in a few words,tldr,detailed,in detail,"
        "in depth,thorough,thoroughly,comprehensive,comprehensively,exhaustive,at length,"
        "deep dive,great detail",
        "simple terms,simple words,simple language,plain language,plain english,plain terms,"
        "nontechnical,technical detail,technical details,technical terms,rigorous,rigorously,"
        "mathematically,formal,formally,informal,playful,lighthearted",
        "as a table,table format,in table form,as json,json format,as csv,csv format,as yaml,"
        "bullet points,bullet point,bulleted,numbered list,as a list,as markdown,ascii art,"
        "as a diagram,as a chart",
    )
)
#: Words that touch a dimension of `ANSWER_SHAPES` without setting it alone (too often
#: meant otherwise: "a short time", "have you experienced", "casual games"); a text that
#: has one is not told apart from a text that sets the dimension.
ANSWER_SHAPE_HINTS: tuple[frozenset[str], ...] = tuple(
    frozenset(dimension.split(","))
    for dimension in (
        "beginner,beginners,novice,novices,newbie,newbies,introductory,entry level,advanced,"
        "expert,experts,experienced,seasoned,new,start,starting,teen,teenager,kid,kids,child,"
        "children,student,students,intermediate,professional,professionals",
        "short,shorter,long,longer,quick,quickly,gist,step by step",
        "simple,simply,plain,casual,technical,technically,tone,funny,humorous,serious",
        "table,json,csv,yaml,chart,diagram,markdown",
    )
)
#: Units whose count sets an answer's length: "in 3 sentences", "under 500 words", or as a
#: modifier in the singular ("a 1 page timeline", "a 300 word story").
LENGTH_UNITS = frozenset(
    "sentence sentences paragraph paragraphs page pages word words line lines bullet bullets "
    "tweet tweets slide slides".split()
)
#: Words before a count of `LENGTH_UNITS` that make it the answer's length.
LENGTH_MARKERS = frozenset("in under within about around than use using".split())
#: Set phrases that add no condition when they are the whole addition ("who is your boss by
#: the way", "where am i at the moment", "will my 401k roll over or not").
QUALIFIER_IDIOMS = frozenset(
    {
        ("by", "the", "way"),
        ("at", "the", "moment"),
        ("for", "sure"),
        ("or", "not"),
        ("at", "my", "disposal"),
    }
)
