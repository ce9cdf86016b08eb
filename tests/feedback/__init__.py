"""Tests of newsletter.feedback: bounces, complaints and unsubscribe mails coming back."""
