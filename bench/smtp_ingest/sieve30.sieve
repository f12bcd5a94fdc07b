# A 30-rule personal script for bench/smtp_ingest --sieve (issue 17 §6): filing by header,
# subject and size, flags, a few regex and relational tests. The bench messages match none
# of the filing rules (so every test is evaluated) and one flag rule; they end in INBOX.
require ["fileinto", "mailbox", "imap4flags", "regex", "relational", "comparator-i;ascii-numeric"];

# 1-10: mailing lists and senders by header
if exists "list-id" { fileinto :create "Lists"; stop; }
if header :contains "list-id" "announce" { fileinto :create "Lists/Announce"; stop; }
if address :is :domain "from" "github.com" { fileinto :create "GitHub"; stop; }
if address :is :domain "from" "gitlab.com" { fileinto :create "GitLab"; stop; }
if address :is :localpart "from" ["noreply", "no-reply", "donotreply"] { fileinto :create "Robots"; stop; }
if header :contains "from" "billing@" { fileinto :create "Billing"; stop; }
if header :is "x-mailer" "Newsletter Pro" { fileinto :create "Newsletters"; stop; }
if header :contains "precedence" ["bulk", "junk"] { fileinto :create "Bulk"; stop; }
if anyof (header :contains "x-spam-flag" "YES", header :contains "x-spam-status" "Yes,") { fileinto :create "Junk"; stop; }
if header :is "auto-submitted" ["auto-generated", "auto-replied"] { fileinto :create "Auto"; stop; }

# 11-20: by subject
if header :contains "subject" "[jira]" { fileinto :create "Tickets"; stop; }
if header :contains "subject" "invoice" { fileinto :create "Invoices"; stop; }
if header :contains "subject" "receipt" { fileinto :create "Receipts"; stop; }
if header :matches "subject" "*meeting*agenda*" { fileinto :create "Meetings"; stop; }
if header :contains "subject" ["webinar", "unsubscribe"] { fileinto :create "Promotions"; stop; }
if header :is "subject" "weekly report" { fileinto :create "Reports"; stop; }
if header :matches "subject" "Re: *[ci]*failed*" { fileinto :create "CI"; stop; }
if header :contains "subject" "urgent" { addflag "\\Flagged"; }
if header :contains "subject" "password reset" { fileinto :create "Security"; stop; }
if header :contains "subject" "out of office" { addflag "$AutoReply"; }

# 21-24: by size
if size :over 10M { fileinto :create "Large"; stop; }
if size :over 1M { addflag "$Large"; }
if size :under 10 { fileinto :create "Tiny"; stop; }
if allof (size :over 100K, header :contains "content-type" "multipart/mixed") { fileinto :create "Attachments"; stop; }

# 25-27: regular expressions
if header :regex "subject" "^\\[(alert|warn|crit)[0-9]*\\]" { fileinto :create "Alerts"; stop; }
if header :regex "from" "^.*@(mail|smtp)[0-9]+\\.example\\.com>?$" { fileinto :create "Relays"; stop; }
if header :regex "message-id" "@(bounce|mailer-daemon)\\." { fileinto :create "Bounces"; stop; }

# 28-30: relational tests
if header :value "gt" :comparator "i;ascii-numeric" "x-priority" "3" { addflag "$LowPriority"; }
if header :count "ge" :comparator "i;ascii-numeric" "received" "20" { fileinto :create "Looped"; stop; }
if exists "message-id" { addflag "$Seen-By-Sieve"; }
