package weir.bench.nexmark;

/** One Nexmark event: exactly one of person, auction, bid is set (a Flink POJO: public fields, no-arg constructor). */
public class Event {
  public Person person;
  public Auction auction;
  public Bid bid;

  public Event() {}

  public static class Person {
    public long id;
    public String name;
    public String emailAddress;
    public String creditCard;
    public String city;
    public String state;
    public long dateTime;

    public Person() {}
  }

  public static class Auction {
    public long id;
    public String itemName;
    public String description;
    public long initialBid;
    public long reserve;
    public long dateTime;
    public long expires;
    public long seller;
    public long category;

    public Auction() {}
  }

  public static class Bid {
    public long auction;
    public long bidder;
    public long price;
    public String channel;
    public String url;
    public long dateTime;

    public Bid() {}
  }

  /** The canonical text line checksums are taken of (benchmarks/nexmark/README.md). */
  public String line() {
    if (person != null) {
      Person p = person;
      return "P|" + p.id + "|" + p.name + "|" + p.emailAddress + "|" + p.creditCard + "|" + p.city + "|" + p.state + "|" + p.dateTime;
    }
    if (auction != null) {
      Auction a = auction;
      return "A|" + a.id + "|" + a.itemName + "|" + a.description + "|" + a.initialBid + "|" + a.reserve + "|" + a.dateTime + "|" + a.expires + "|" + a.seller + "|" + a.category;
    }
    Bid b = bid;
    return "B|" + b.auction + "|" + b.bidder + "|" + b.price + "|" + b.channel + "|" + b.url + "|" + b.dateTime;
  }
}
