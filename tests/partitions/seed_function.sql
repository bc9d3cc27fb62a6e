-- manage_event_log_partitions() verbatim from seed 000 (the baseline the product replaces).
CREATE OR REPLACE FUNCTION manage_event_log_partitions()
RETURNS void AS $$
DECLARE
    start_date date;
    end_date date;
    partition_name text;
    i integer;
BEGIN
    -- 過去3ヶ月分と未来3ヶ月分のパーティションを作成
    FOR i IN -3..3 LOOP
        start_date := date_trunc('month', CURRENT_DATE + (i || ' months')::interval);
        end_date := start_date + interval '1 month';
        partition_name := 'event_logs_' || to_char(start_date, 'YYYY_MM');
        
        -- パーティションが存在しない場合のみ作成
        IF NOT EXISTS (
            SELECT 1 FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relname = partition_name
        ) THEN
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I PARTITION OF event_logs 
                FOR VALUES FROM (%L) TO (%L)',
                partition_name, start_date, end_date
            );
            
            -- パーティション固有のインデックスを作成
            EXECUTE format(
                'CREATE INDEX IF NOT EXISTS idx_%I_player_time 
                ON %I(player_id, server_timestamp DESC)',
                partition_name, partition_name
            );
            
            EXECUTE format(
                'CREATE INDEX IF NOT EXISTS idx_%I_type 
                ON %I(event_type, server_timestamp DESC)',
                partition_name, partition_name
            );
        END IF;
    END LOOP;
    
    -- 古いパーティションの自動削除（12ヶ月以上前）
    FOR partition_name IN 
        SELECT tablename FROM pg_tables 
        WHERE schemaname = 'public' 
        AND tablename LIKE 'event_logs_%'
        AND tablename < 'event_logs_' || to_char(CURRENT_DATE - interval '12 months', 'YYYY_MM')
    LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', partition_name);
    END LOOP;
END;
$$ LANGUAGE plpgsql;
