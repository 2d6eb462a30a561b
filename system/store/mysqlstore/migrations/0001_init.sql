-- zzim's schema. Ids are VARBINARY: compared and ordered by their bytes, so
-- ids that differ in case or trailing spaces stay different (a _bin
-- collation pads spaces) and Dump orders as Go compares strings. Bodies
-- are utf8mb4 text. Statements end with a semicolon at the end of a line.

CREATE TABLE IF NOT EXISTS conversations (
  conv_id        VARBINARY(255)  NOT NULL,
  last_seq       BIGINT UNSIGNED NOT NULL DEFAULT 0,
  -- created_at_ms of the last message: orders the broadcast conversation
  -- among a user's conversations.
  last_active_ms BIGINT          NOT NULL DEFAULT 0,
  PRIMARY KEY (conv_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS messages (
  conv_id       VARBINARY(255)  NOT NULL,
  seq           BIGINT UNSIGNED NOT NULL,
  sender_id     VARBINARY(255)  NOT NULL,
  client_msg_id VARBINARY(255)  NOT NULL,
  cseq          BIGINT UNSIGNED NOT NULL,
  body          MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  created_at_ms BIGINT          NOT NULL,
  PRIMARY KEY (conv_id, seq),
  UNIQUE KEY messages_dedup (conv_id, sender_id, client_msg_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS user_conversations (
  user_id        VARBINARY(255)  NOT NULL,
  conv_id        VARBINARY(255)  NOT NULL,
  peer_id        VARBINARY(255)  NOT NULL,
  listing_id     VARBINARY(255)  NOT NULL,
  read_seq       BIGINT UNSIGNED NOT NULL DEFAULT 0,
  -- created_at_ms of the latest message the user sent or received here:
  -- orders the conversation list without reading another shard.
  last_active_ms BIGINT          NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, conv_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS contacts (
  user_id        VARBINARY(255) NOT NULL,
  peer_id        VARBINARY(255) NOT NULL,
  conv_id        VARBINARY(255) NOT NULL,
  last_active_ms BIGINT         NOT NULL,
  PRIMARY KEY (user_id, peer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
