// @generated automatically by Diesel CLI.

diesel::table! {
    booking_events (id) {
        id -> Int8,
        booking_id -> Int8,
        from_status -> Nullable<Text>,
        to_status -> Text,
        driver_id -> Nullable<Int8>,
        node_id -> Text,
        fencing_token -> Int8,
        request_id -> Text,
        created_at -> Timestamptz,
        actor -> Nullable<Text>,
    }
}

diesel::table! {
    bookings (id) {
        id -> Int8,
        rider_id -> Int8,
        driver_id -> Nullable<Int8>,
        pickup_lat -> Float8,
        pickup_lng -> Float8,
        dropoff_lat -> Float8,
        dropoff_lng -> Float8,
        estimated_fare -> Numeric,
        actual_fare -> Nullable<Numeric>,
        vehicle_type -> Nullable<Text>,
        status -> Text,
        cancellation_reason -> Nullable<Text>,
        fencing_token -> Int8,
        created_at -> Timestamptz,
        assigned_at -> Nullable<Timestamptz>,
        accepted_at -> Nullable<Timestamptz>,
        cancelled_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    drivers (id) {
        id -> Int8,
        name -> Text,
        phone -> Text,
        email -> Nullable<Text>,
        lat -> Nullable<Float8>,
        lng -> Nullable<Float8>,
        status -> Text,
        vehicle_type -> Text,
        rating -> Numeric,
        current_booking_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_keys (scope, key) {
        key -> Text,
        fingerprint -> Text,
        status -> Int2,
        body -> Text,
        created_at -> Timestamptz,
        scope -> Text,
    }
}

diesel::table! {
    leases (key) {
        key -> Text,
        value -> Text,
        owner_address -> Text,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    riders (id) {
        id -> Int8,
        name -> Text,
        phone -> Text,
        email -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(booking_events -> bookings (booking_id));
diesel::joinable!(booking_events -> drivers (driver_id));
diesel::joinable!(bookings -> riders (rider_id));

diesel::allow_tables_to_appear_in_same_query!(
    booking_events,
    bookings,
    drivers,
    idempotency_keys,
    leases,
    riders,
);
