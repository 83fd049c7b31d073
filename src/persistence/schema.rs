//! Table definitions shared by both SQL backends (the migrations under `migrations/` create them).

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        password_hash -> Nullable<Text>,
        role -> Text,
        created_at -> BigInt,
        token_version -> BigInt,
    }
}

diesel::table! {
    blacklist (kind, subject) {
        kind -> Text,
        subject -> Text,
        until -> Nullable<BigInt>,
        reason -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    products (id) {
        id -> BigInt,
        name -> Text,
        price_cents -> BigInt,
        stock -> Integer,
        per_user_limit -> Integer,
        shards -> Integer,
        starts_at -> BigInt,
        ends_at -> BigInt,
        created_at -> BigInt,
        payment_window_secs -> Integer,
        sale -> Text,
        requires_token -> Bool,
    }
}

diesel::table! {
    sale_switch (id) {
        id -> Integer,
        state -> Text,
        changed_at -> BigInt,
    }
}

diesel::table! {
    journal (position) {
        position -> BigInt,
        product_id -> BigInt,
        payload -> Text,
    }
}

diesel::table! {
    snapshots (product_id) {
        product_id -> BigInt,
        position -> BigInt,
        generation -> BigInt,
        chunks -> Integer,
        taken_at -> BigInt,
    }
}

diesel::table! {
    snapshot_chunks (product_id, generation, seq) {
        product_id -> BigInt,
        generation -> BigInt,
        seq -> Integer,
        data -> Text,
    }
}

diesel::table! {
    orders (order_id) {
        order_id -> Text,
        product_id -> BigInt,
        user_id -> BigInt,
        quantity -> Integer,
        status -> Text,
        reserved_at -> BigInt,
        pay_before -> BigInt,
        journal_position -> BigInt,
        paid_at -> Nullable<BigInt>,
        expired_at -> Nullable<BigInt>,
        cancelled_at -> Nullable<BigInt>,
        released_at -> Nullable<BigInt>,
        refund_requested_at -> Nullable<BigInt>,
        refunded_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    projector_offsets (name) {
        name -> Text,
        position -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(snapshots, snapshot_chunks);

diesel::table! {
    dead_letters (id) {
        id -> BigInt,
        kind -> Text,
        order_id -> Text,
        product_id -> BigInt,
        user_id -> BigInt,
        amount_cents -> BigInt,
        reason -> Text,
        attempts -> Text,
        created_at -> BigInt,
        reprocessed_at -> Nullable<BigInt>,
    }
}
