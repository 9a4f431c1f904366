package weir.bench.nexmark;

/**
 * The Nexmark event generator: event n of a seed is a pure function of (seed, n), by the rules
 * in benchmarks/nexmark/README.md; benchmarks/nexmark/generator.ts implements the same rules
 * and checksumOfEvents proves both produce the same sequence.
 */
public final class Generator {
  static final long FIRST_PERSON_ID = 1000;
  static final long FIRST_AUCTION_ID = 1000;
  static final long FIRST_CATEGORY_ID = 10;
  static final long PERSON_PROPORTION = 1;
  static final long AUCTION_PROPORTION = 3;
  static final long PROPORTION_DENOMINATOR = 50;
  static final int NUM_CATEGORIES = 5;
  static final long NUM_IN_FLIGHT_AUCTIONS = 100;
  static final long NUM_ACTIVE_PEOPLE = 1000;
  static final long PERSON_ID_LEAD = 10;
  static final long AUCTION_ID_LEAD = 10;
  static final long HOT_AUCTION_RATIO = 100;
  static final long HOT_SELLER_RATIO = 100;
  static final long HOT_BIDDER_RATIO = 100;
  static final int HOT_AUCTIONS_ONE_IN = 2;
  static final int HOT_SELLERS_ONE_IN = 4;
  static final int HOT_BIDDERS_ONE_IN = 4;
  public static final long BASE_TIME = 1_700_000_000_000L;
  static final long EVENTS_PER_MS = 10;
  static final long EVENTS_FOR_AUCTIONS = (NUM_IN_FLIGHT_AUCTIONS * PROPORTION_DENOMINATOR) / AUCTION_PROPORTION;

  static final String[] FIRST_NAMES = {"Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"};
  static final String[] LAST_NAMES = {"Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"};
  static final String[] US_STATES = {"AZ", "CA", "ID", "OR", "WA", "WY"};
  static final String[] US_CITIES = {"Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"};
  static final String[] CHANNELS = {"Google", "Facebook", "Baidu", "Apple"};

  private Generator() {}

  /** MurmurHash3's 32-bit finalizer. */
  public static int fmix32(int h) {
    h ^= h >>> 16;
    h *= 0x85ebca6b;
    h ^= h >>> 13;
    h *= 0xc2b2ae35;
    h ^= h >>> 16;
    return h;
  }

  /** FNV-1a over the UTF-16 code units of s, unsigned 32-bit in a long. */
  public static long fnv1a(String s) {
    int h = 0x811c9dc5;
    for (int i = 0; i < s.length(); i++) h = (h ^ s.charAt(i)) * 0x01000193;
    return Integer.toUnsignedLong(h);
  }

  /** The random draws of one event: a counter-based stream seeded by (seed, n). */
  static final class Draws {
    private int state;

    Draws(int seed, int n) {
      state = fmix32(n * 0x9e3779b9 + seed);
    }

    long nextInt(long bound) {
      state += 0x6d2b79f5;
      return Integer.toUnsignedLong(fmix32(state)) % bound;
    }

    long price() {
      long low = 100;
      for (long d = nextInt(6); d > 0; d--) low *= 10;
      return low + nextInt(9 * low);
    }
  }

  public static long timestampOf(long n) {
    return BASE_TIME + n / EVENTS_PER_MS;
  }

  static long lastBase0PersonId(long n) {
    return n / PROPORTION_DENOMINATOR;
  }

  static long lastBase0AuctionId(long n) {
    long epoch = n / PROPORTION_DENOMINATOR;
    long offset = n % PROPORTION_DENOMINATOR;
    if (offset < PERSON_PROPORTION) {
      epoch--;
      offset = AUCTION_PROPORTION - 1;
    } else if (offset >= PERSON_PROPORTION + AUCTION_PROPORTION) {
      offset = AUCTION_PROPORTION - 1;
    } else {
      offset -= PERSON_PROPORTION;
    }
    return epoch * AUCTION_PROPORTION + offset;
  }

  static long nextBase0PersonId(long n, Draws d) {
    long people = lastBase0PersonId(n) + 1;
    long active = Math.min(people, NUM_ACTIVE_PEOPLE);
    return people - active + d.nextInt(active + PERSON_ID_LEAD);
  }

  static long nextBase0AuctionId(long n, Draws d) {
    long max = lastBase0AuctionId(n);
    long min = Math.max(max - NUM_IN_FLIGHT_AUCTIONS, 0);
    return min + d.nextInt(max - min + 1 + AUCTION_ID_LEAD);
  }

  static String pad4(long x) {
    String s = Long.toString(x);
    return "0000".substring(s.length()) + s;
  }

  /** Event n (0 <= n < 2^31) of seed. */
  public static Event eventAt(int seed, long n) {
    Draws d = new Draws(seed, (int) n);
    long ts = timestampOf(n);
    long offset = n % PROPORTION_DENOMINATOR;
    Event e = new Event();
    if (offset < PERSON_PROPORTION) {
      Event.Person p = new Event.Person();
      p.id = lastBase0PersonId(n) + FIRST_PERSON_ID;
      p.name = FIRST_NAMES[(int) d.nextInt(FIRST_NAMES.length)] + " " + LAST_NAMES[(int) d.nextInt(LAST_NAMES.length)];
      p.emailAddress = "p" + p.id + "@nexmark.example";
      p.creditCard = pad4(d.nextInt(10_000)) + " " + pad4(d.nextInt(10_000)) + " " + pad4(d.nextInt(10_000)) + " " + pad4(d.nextInt(10_000));
      p.city = US_CITIES[(int) d.nextInt(US_CITIES.length)];
      p.state = US_STATES[(int) d.nextInt(US_STATES.length)];
      p.dateTime = ts;
      e.person = p;
    } else if (offset < PERSON_PROPORTION + AUCTION_PROPORTION) {
      Event.Auction a = new Event.Auction();
      a.id = lastBase0AuctionId(n) + FIRST_AUCTION_ID;
      a.seller = (d.nextInt(HOT_SELLERS_ONE_IN) > 0 ? (lastBase0PersonId(n) / HOT_SELLER_RATIO) * HOT_SELLER_RATIO : nextBase0PersonId(n, d)) + FIRST_PERSON_ID;
      a.category = FIRST_CATEGORY_ID + d.nextInt(NUM_CATEGORIES);
      a.initialBid = d.price();
      long horizonMs = timestampOf(n + EVENTS_FOR_AUCTIONS) - ts;
      a.expires = ts + 1 + d.nextInt(Math.max(horizonMs * 2, 1));
      a.reserve = a.initialBid + d.price();
      a.itemName = "item-" + a.id;
      a.description = "auction " + a.id;
      a.dateTime = ts;
      e.auction = a;
    } else {
      Event.Bid b = new Event.Bid();
      b.auction = (d.nextInt(HOT_AUCTIONS_ONE_IN) > 0 ? (lastBase0AuctionId(n) / HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO : nextBase0AuctionId(n, d)) + FIRST_AUCTION_ID;
      b.bidder = (d.nextInt(HOT_BIDDERS_ONE_IN) > 0 ? (lastBase0PersonId(n) / HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1 : nextBase0PersonId(n, d)) + FIRST_PERSON_ID;
      b.price = d.price();
      b.channel = CHANNELS[(int) d.nextInt(CHANNELS.length)];
      b.url = "https://nexmark.example/" + b.channel + "/item/" + b.auction;
      b.dateTime = ts;
      e.bid = b;
    }
    return e;
  }

  /** Order-dependent checksum of events 0..count-1: h = fmix32(h + fnv1a(line)), unsigned. */
  public static long checksumOfEvents(int seed, long count) {
    int h = 0;
    for (long n = 0; n < count; n++) h = fmix32(h + (int) fnv1a(eventAt(seed, n).line()));
    return Integer.toUnsignedLong(h);
  }
}
